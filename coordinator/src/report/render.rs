//! `mer report`: turns a run folder into `report.md` (figures as PNG files next to it) and one
//! self-contained `report.html` (the same content, figures inlined as base64 data URIs, no external
//! asset), plus exports a researcher's tools take.
//!
//! Both documents are rendered from one list of [`Block`]s, so they always hold the same numbers. Every
//! score comes from the pooled predictions in `predictions/` - the files `mer score` reads - recomputed
//! here with [`ScoreReport::compute`]; a disagreement with `results.json` is an error, never silently
//! papered over.

use super::paper;
use super::plots::{self, Series};
use crate::error::CoordError;
use crate::results::aggregate::SweepPointResult;
use crate::results::bundle::{load_run, FoldRecord, PriorRecord, RunData};
use crate::results::document::{to_html, to_markdown, Block};
use crate::results::sections::{self, f4, pair, point_label};
use mer_shared::fs::write_atomic;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use mer_shared::{Dataset, LabelScheme};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `mer report` wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (self-contained).
    pub html: PathBuf,
    /// Every PNG written under `figures/`.
    pub images: Vec<PathBuf>,
    /// Exported files under `exports/`.
    pub exports: Vec<PathBuf>,
    /// The recomputed scores per sweep point index (what the tables show).
    pub scores: BTreeMap<u32, ScoreReport>,
}

/// Renders the report of the run in `run_dir` into `out_dir` (created if needed).
pub fn render_report(run_dir: &Path, out_dir: &Path) -> Result<ReportOutput, CoordError> {
    render_report_with(run_dir, out_dir, Vec::new())
}

/// Like [`render_report`], with `extra` blocks (e.g. the clip figures of `mer report --clip`, drawn by
/// the worker crate) placed before the provenance section.
pub fn render_report_with(
    run_dir: &Path,
    out_dir: &Path,
    extra: Vec<Block>,
) -> Result<ReportOutput, CoordError> {
    let run = load_run(run_dir)?;
    let scores = recompute_scores(&run)?;
    let mut blocks = build_blocks(&run, &scores)?;
    let at = blocks
        .iter()
        .position(|b| matches!(b, Block::Heading(2, t) if t == "Provenance"))
        .unwrap_or(blocks.len());
    blocks.splice(at..at, extra);
    std::fs::create_dir_all(out_dir.join("figures"))
        .map_err(|e| CoordError::io(out_dir.join("figures"), e))?;
    let mut images = Vec::new();
    for b in &blocks {
        if let Block::Image { file, png, .. } = b {
            let p = out_dir.join("figures").join(file);
            write_atomic(&p, png)?;
            images.push(p);
        }
    }
    let exports = write_exports(&run, out_dir)?;
    let title = format!("mer report: {}", run.results.experiment);
    let md = to_markdown(&blocks);
    let html = to_html(&title, &blocks);
    let markdown = out_dir.join("report.md");
    let html_path = out_dir.join("report.html");
    write_atomic(&markdown, md.as_bytes())?;
    write_atomic(&html_path, html.as_bytes())?;
    Ok(ReportOutput {
        markdown,
        html: html_path,
        images,
        exports,
        scores,
    })
}

/// Scores every sweep point from its prediction file exactly as `mer score` does, and checks them
/// against `results.json`.
pub fn recompute_scores(run: &RunData) -> Result<BTreeMap<u32, ScoreReport>, CoordError> {
    let mut out = BTreeMap::new();
    for sp in &run.results.sweep_points {
        let Some(recs) = run.predictions.get(&sp.index) else {
            continue;
        };
        let s = ScoreReport::compute(run.results.scheme, recs)?;
        if let Some(stored) = &sp.scores {
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
            if stored.n != s.n
                || !close(stored.uf1, s.uf1)
                || !close(stored.uar, s.uar)
                || stored.confusion != s.confusion
            {
                return Err(CoordError::invalid(
                    format!("run folder {}", run.dir.display()),
                    format!(
                        "sweep point '{}': results.json says n={} UF1={:.4} UAR={:.4}, its prediction file scores n={} UF1={:.4} UAR={:.4}",
                        sp.label, stored.n, stored.uf1, stored.uar, s.n, s.uf1, s.uar
                    ),
                ));
            }
        }
        out.insert(sp.index, s);
    }
    Ok(out)
}

fn part_name(key: &str) -> String {
    key.parse::<Dataset>()
        .map(|d| d.display_name().to_string())
        .unwrap_or_else(|_| key.to_string())
}

/// The results of sweep point `idx`.
fn sweep_point(run: &RunData, idx: u32) -> Option<&SweepPointResult> {
    run.results.sweep_points.iter().find(|s| s.index == idx)
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Distinct values of an axis over the sweep points that have it.
fn axis_values(run: &RunData, axis: &str) -> BTreeSet<String> {
    run.results
        .sweep_points
        .iter()
        .filter_map(|s| s.values.get(axis))
        .map(value_str)
        .collect()
}

/// The sweep point's values without `axes`, as a label (`""` when nothing else varies).
fn other_axes(values: &BTreeMap<String, Value>, axes: &[&str]) -> String {
    values
        .iter()
        .filter(|(k, _)| !axes.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", value_str(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn build_blocks(
    run: &RunData,
    scores: &BTreeMap<u32, ScoreReport>,
) -> Result<Vec<Block>, CoordError> {
    let r = &run.results;
    let mut b = Vec::new();
    b.push(Block::Heading(1, format!("Report: {}", r.experiment)));
    b.push(Block::Para(format!(
        "{}, recomputed from the prediction files in `predictions/`, exactly as `mer score` does.",
        sections::scope(r)
    )));
    b.extend(sections::protocol_note(r.protocol));
    results_table(run, scores, &mut b);
    method_comparison(run, scores, &mut b)?;
    frozen_table(run, scores, &mut b);
    alpha_sweep(run, scores, &mut b)?;
    per_point(run, scores, &mut b)?;
    selection_section(run, &mut b);
    b.extend(sections::leakage_section(&run.results));
    per_subject(run, &mut b);
    training_curves(run, &mut b)?;
    provenance(run, &mut b);
    exports_section(run, &mut b);
    Ok(b)
}

fn results_table(run: &RunData, scores: &BTreeMap<u32, ScoreReport>, b: &mut Vec<Block>) {
    let r = &run.results;
    if r.scheme == LabelScheme::Megc3 {
        b.push(Block::Heading(
            2,
            "Results in the layout of the paper's Table 6 (UF1 / UAR)".into(),
        ));
        let all_parts = r.parts.len() == 3;
        let mut head = vec!["method".to_string(), "source".into(), "folds".into()];
        let cols: Vec<&str> = vec!["smic", "casme2", "samm", "all"];
        for c in &cols {
            head.push(match *c {
                "all" if all_parts => "composite".into(),
                "all" => "all (parts in this run)".into(),
                k => part_name(k),
            });
        }
        let mut rows = Vec::new();
        for sp in &r.sweep_points {
            let s = scores.get(&sp.index);
            let mut row = vec![
                format!(
                    "{} (this run) {}",
                    sp.method.display_name(),
                    point_label(&run.results, sp.index)
                ),
                "this run".into(),
                format!("{}/{}", sp.folds_done, sp.folds_total),
            ];
            for c in &cols {
                let cell = match (s, *c) {
                    (Some(s), "all") => pair(s.uf1, s.uar),
                    (Some(s), k) => s
                        .parts
                        .get(k)
                        .map(|p| pair(p.uf1, p.uar))
                        .unwrap_or_else(|| "-".into()),
                    (None, _) => "-".into(),
                };
                row.push(cell);
            }
            rows.push(row);
        }
        for pr in &paper::TABLE6 {
            let mut row = vec![
                pr.method.to_string(),
                "paper, Table 6 (published)".into(),
                "68".into(),
            ];
            for c in &cols {
                row.push(pr.part(c).map(|p| pair(p.uf1, p.uar)).unwrap_or_default());
            }
            rows.push(row);
        }
        b.push(Block::Table { head, rows });
        b.push(Block::Para(format!(
            "Rows marked \"paper, Table 6 (published)\" are the published numbers of {}, on the real licensed datasets; they are \
             shown for comparison only and are not produced by this run.{}",
            paper::SOURCE,
            if all_parts { "" } else { " This run does not cover all three parts, so its last column is not the composite." }
        )));
    } else {
        b.push(Block::Heading(
            2,
            format!(
                "Results in the layout of the paper's Tables 4/5 (Acc / F1, scheme {})",
                r.scheme
            ),
        ));
        let mut head = vec!["sweep point".to_string(), "folds".into()];
        let keys: Vec<&str> = r
            .parts
            .iter()
            .map(|p| p.key())
            .chain(std::iter::once("all"))
            .collect();
        for k in &keys {
            let n = if *k == "all" {
                "all".into()
            } else {
                part_name(k)
            };
            head.push(format!("{n} Acc"));
            head.push(format!("{n} F1"));
        }
        let mut rows = Vec::new();
        for sp in &r.sweep_points {
            let s = scores.get(&sp.index);
            let mut row = vec![
                point_label(&run.results, sp.index),
                format!("{}/{}", sp.folds_done, sp.folds_total),
            ];
            for k in &keys {
                let (acc, f1) = match (s, *k) {
                    (Some(s), "all") => (f4(s.acc), f4(s.f1_macro)),
                    (Some(s), k) => s
                        .parts
                        .get(k)
                        .map(|p| (f4(p.acc), f4(p.f1_macro)))
                        .unwrap_or(("-".into(), "-".into())),
                    (None, _) => ("-".into(), "-".into()),
                };
                row.push(acc);
                row.push(f1);
            }
            rows.push(row);
        }
        b.push(Block::Table { head, rows });
        b.push(Block::Para(
            "F1 is the macro-F1 on pooled counts. The paper's Table 4/5 numbers are not recorded in the project's reference notes \
             (docs/datasets.md), so no published row is shown here rather than an unverified one."
                .into(),
        ));
    }
}

/// When the run holds more than one method: a per-part UF1 plot and UAR plot, one bar per sweep point
/// (method and any other swept value), all measured on the same folds, plus each point's training time.
fn method_comparison(
    run: &RunData,
    scores: &BTreeMap<u32, ScoreReport>,
    b: &mut Vec<Block>,
) -> Result<(), CoordError> {
    let r = &run.results;
    let methods: BTreeSet<_> = r.sweep_points.iter().map(|s| &s.method).collect();
    if methods.len() < 2 {
        return Ok(());
    }
    b.push(Block::Heading(2, "Methods on the same folds".into()));
    let mut groups: Vec<String> = r
        .parts
        .iter()
        .map(|p| p.display_name().to_string())
        .collect();
    groups.push("all".into());
    let keys: Vec<&str> = r.parts.iter().map(|p| p.key()).chain(["all"]).collect();
    let mut uf1 = Vec::new();
    let mut uar = Vec::new();
    let mut rows = Vec::new();
    for sp in &r.sweep_points {
        let Some(s) = scores.get(&sp.index) else {
            continue;
        };
        let other = other_axes(&sp.values, &["method"]);
        let name = if other.is_empty() {
            sp.method.display_name().to_string()
        } else {
            format!("{} ({other})", sp.method.display_name())
        };
        let get = |k: &str| -> Option<(f64, f64)> {
            if k == "all" {
                Some((s.uf1, s.uar))
            } else {
                s.parts.get(k).map(|p| (p.uf1, p.uar))
            }
        };
        uf1.push((
            name.clone(),
            keys.iter().map(|k| get(k).map_or(0.0, |x| x.0)).collect(),
        ));
        uar.push((
            name.clone(),
            keys.iter().map(|k| get(k).map_or(0.0, |x| x.1)).collect(),
        ));
        let n = sp.folds_done.max(1) as f64;
        rows.push(vec![
            name,
            format!("{}/{}", sp.folds_done, sp.folds_total),
            pair(s.uf1, s.uar),
            format!("{:.0}", sp.train_seconds),
            format!("{:.1}", sp.train_seconds / n),
        ]);
    }
    b.push(Block::Table {
        head: vec![
            "method (sweep point)".into(),
            "folds".into(),
            "all UF1 / UAR".into(),
            "fold training, s (sum)".into(),
            "s per fold".into(),
        ],
        rows,
    });
    b.push(Block::Image {
        file: "methods_uf1.png".into(),
        caption: "UF1 per part, every method of this run on the same LOSO folds (measured here)"
            .into(),
        png: plots::bars_png("UF1 per part and method", "UF1", &groups, &uf1)?,
    });
    b.push(Block::Image {
        file: "methods_uar.png".into(),
        caption: "UAR per part, every method of this run on the same LOSO folds (measured here)"
            .into(),
        png: plots::bars_png("UAR per part and method", "UAR", &groups, &uar)?,
    });
    b.push(Block::Para(
        "Every bar is measured by this run, on the same folds, with the same pooled scoring; each method trains with its          fixed budget and nothing is selected on a test subject. Training time is the sum of the folds' wall-clock          seconds as the workers reported them (parallel workers overlap)."
            .into(),
    ));
    Ok(())
}

/// Nested selection (`results.json` field `selection`): per method, the selected score next to every
/// candidate's clean and oracle-epoch scores and the oracle point, the premiums, and the point each outer
/// fold chose with the inner scores it chose by.
fn selection_section(run: &RunData, b: &mut Vec<Block>) {
    let r = &run.results;
    let Some(sel) = &r.selection else {
        return;
    };
    b.push(Block::Heading(
        2,
        "Model selection: nested (a result)".into(),
    ));
    b.push(sections::selection_explanation(sel));
    let opt = sections::opt;
    let diag = r.diagnostics.as_ref();
    for m in &sel.methods {
        b.push(Block::Heading(3, m.method.display_name().to_string()));
        let mut head = score_head(run, &["row"]);
        head.push("chosen by outer folds".into());
        let mut rows = Vec::new();
        let mut row = vec![format!(
            "**selected** (nested, {}/{} folds{})",
            m.folds_done,
            m.folds_total,
            if m.partial { ", partial" } else { "" }
        )];
        row.extend(score_cells(run, m.scores.as_ref()));
        row.push(m.folds_total.to_string());
        rows.push(row);
        for (pos, &p) in m.points.iter().enumerate() {
            let clean = sweep_point(run, p).and_then(|sp| sp.scores.as_ref());
            let mut row = vec![format!("clean {}", point_label(&run.results, p))];
            row.extend(score_cells(run, clean));
            row.push(m.times_chosen[pos].to_string());
            rows.push(row);
        }
        for &p in &m.points {
            let oracle = diag
                .and_then(|d| d.oracle_epoch.iter().find(|o| o.index == p))
                .and_then(|o| o.scores.as_ref());
            let mut row = vec![format!(
                "oracle epoch {} (diagnostic)",
                point_label(&run.results, p)
            )];
            row.extend(score_cells(run, oracle));
            row.push("-".into());
            rows.push(row);
        }
        b.push(Block::Table { head, rows });
        if let Some(o) = diag.and_then(|d| d.oracle_point.iter().find(|o| o.method == m.method)) {
            b.push(Block::Para(format!(
                "Oracle point (diagnostic): {} at {} UF1 / UAR; mean of the points {}; selected {} / {}. \
                 Premium of the oracle point over the selected score: {} UF1 / {} UAR; over the mean of the \
                 points: {:+.4} / {:+.4}.",
                point_label(&run.results, o.best_index),
                pair(o.best_uf1, o.best_uar),
                pair(o.mean_uf1, o.mean_uar),
                opt(o.selected_uf1),
                opt(o.selected_uar),
                o.premium_over_selected_uf1
                    .map_or_else(|| "-".to_string(), |v| format!("{v:+.4}")),
                o.premium_over_selected_uar
                    .map_or_else(|| "-".to_string(), |v| format!("{v:+.4}")),
                o.premium_uf1,
                o.premium_uar
            )));
        }
        let mut head = vec!["outer fold".to_string(), "selected point".to_string()];
        head.extend(
            m.points
                .iter()
                .map(|p| format!("inner UF1 {}", point_label(&run.results, *p))),
        );
        let rows = m
            .folds
            .iter()
            .map(|f| {
                let mut row = vec![
                    f.fold.clone(),
                    f.selected_label
                        .clone()
                        .unwrap_or_else(|| "- (inner tasks unfinished)".into()),
                ];
                row.extend(
                    f.inner
                        .iter()
                        .map(crate::results::selection::InnerScore::cell),
                );
                row
            })
            .collect();
        b.push(Block::Table { head, rows });
    }
    for w in &sel.warnings {
        b.push(sections::warning(w));
    }
}

fn score_cells(run: &RunData, s: Option<&ScoreReport>) -> Vec<String> {
    let mut row = Vec::new();
    for p in &run.results.parts {
        row.push(
            s.and_then(|s| s.parts.get(p.key()))
                .map(|p| pair(p.uf1, p.uar))
                .unwrap_or_else(|| "-".into()),
        );
    }
    row.push(s.map(|s| pair(s.uf1, s.uar)).unwrap_or_else(|| "-".into()));
    row
}

fn score_head(run: &RunData, first: &[&str]) -> Vec<String> {
    let mut head: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    for p in &run.results.parts {
        head.push(format!("{} UF1 / UAR", p.display_name()));
    }
    head.push("all UF1 / UAR".into());
    head
}

/// The setting a Table 7 row stands for: no prior learning, or prior learning with k frozen layers.
fn frozen_setting(sp: &SweepPointResult) -> (bool, u64, String) {
    if sp.values.get("prior") == Some(&Value::Bool(false)) {
        return (true, 0, "no prior learning (random init)".into());
    }
    match sp.values.get("frozen_layers") {
        Some(v) => (
            false,
            v.as_u64().unwrap_or(0),
            format!("k = {} frozen", value_str(v)),
        ),
        None => (false, 0, "prior learning".into()),
    }
}

fn frozen_table(run: &RunData, scores: &BTreeMap<u32, ScoreReport>, b: &mut Vec<Block>) {
    let frozen = axis_values(run, "frozen_layers");
    let prior = axis_values(run, "prior");
    if frozen.len() < 2 && prior.len() < 2 {
        return;
    }
    b.push(Block::Heading(
        2,
        "Frozen conv layers after prior learning (the paper's Table 7)".into(),
    ));
    let mut points: Vec<&SweepPointResult> = run.results.sweep_points.iter().collect();
    points.sort_by_key(|s| {
        let (no_prior, k, _) = frozen_setting(s);
        (
            other_axes(&s.values, &["frozen_layers", "prior"]),
            no_prior,
            k,
        )
    });
    let mut rows = Vec::new();
    for sp in &points {
        let other = other_axes(&sp.values, &["frozen_layers", "prior"]);
        let mut row = vec![
            frozen_setting(sp).2,
            if other.is_empty() { "-".into() } else { other },
            format!("{}/{}", sp.folds_done, sp.folds_total),
        ];
        row.extend(score_cells(run, scores.get(&sp.index)));
        rows.push(row);
    }
    b.push(Block::Table {
        head: score_head(run, &["setting", "other axes", "folds"]),
        rows,
    });
    frozen_seed_means(run, scores, &points, b);
    b.push(Block::Para(
        "The paper's Table 7 numbers are not recorded in the project's reference notes (docs/datasets.md); only this run's \
         numbers are shown."
            .into(),
    ));
}

/// Table 7 over training seeds: one row per setting with the mean of its seeds' pooled scores (and each
/// seed's UF1), when the only other axis is `seed`. A seed whose point has no score yet is left out and
/// the row says how many seeds it averages.
fn frozen_seed_means(
    run: &RunData,
    scores: &BTreeMap<u32, ScoreReport>,
    points: &[&SweepPointResult],
    b: &mut Vec<Block>,
) {
    let seeds = axis_values(run, "seed");
    let only_seeds = points
        .iter()
        .all(|s| other_axes(&s.values, &["frozen_layers", "prior", "seed"]).is_empty());
    if seeds.len() < 2 || !only_seeds {
        return;
    }
    let mut rows: BTreeMap<(bool, u64), (String, Vec<&ScoreReport>)> = BTreeMap::new();
    for sp in points {
        let (no_prior, k, label) = frozen_setting(sp);
        let row = rows.entry((no_prior, k)).or_insert((label, Vec::new()));
        row.1.extend(scores.get(&sp.index));
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let mut table = Vec::new();
    for (label, s) in rows.values() {
        let mut row = vec![label.clone(), format!("{}/{}", s.len(), seeds.len())];
        for p in &run.results.parts {
            let (uf1, uar): (Vec<f64>, Vec<f64>) = s
                .iter()
                .filter_map(|r| r.parts.get(p.key()))
                .map(|p| (p.uf1, p.uar))
                .unzip();
            row.push(if uf1.is_empty() {
                "-".into()
            } else {
                pair(mean(&uf1), mean(&uar))
            });
        }
        let uf1: Vec<f64> = s.iter().map(|r| r.uf1).collect();
        let uar: Vec<f64> = s.iter().map(|r| r.uar).collect();
        row.push(if s.is_empty() {
            "-".into()
        } else {
            pair(mean(&uf1), mean(&uar))
        });
        row.push(
            uf1.iter()
                .map(|u| format!("{u:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        table.push(row);
    }
    let mut head = score_head(run, &["setting", "seeds"]);
    head.push("UF1 per seed".into());
    b.push(Block::Para(format!(
        "Mean over the {} training seeds ({}) of each seed's pooled scores:",
        seeds.len(),
        seeds.into_iter().collect::<Vec<_>>().join(", ")
    )));
    b.push(Block::Table { head, rows: table });
}

fn alpha_sweep(
    run: &RunData,
    scores: &BTreeMap<u32, ScoreReport>,
    b: &mut Vec<Block>,
) -> Result<(), CoordError> {
    if axis_values(run, "alpha").len() < 2 {
        return Ok(());
    }
    b.push(Block::Heading(
        2,
        "Focal-loss alpha sweep (the paper's Fig. 4)".into(),
    ));
    let mut groups: BTreeMap<String, Vec<(f64, &ScoreReport)>> = BTreeMap::new();
    let mut rows = Vec::new();
    for sp in &run.results.sweep_points {
        let Some(a) = sp.values.get("alpha").and_then(Value::as_f64) else {
            continue;
        };
        let s = scores.get(&sp.index);
        let other = other_axes(&sp.values, &["alpha"]);
        let mut row = vec![
            format!("{a}"),
            if other.is_empty() {
                "-".into()
            } else {
                other.clone()
            },
            format!("{}/{}", sp.folds_done, sp.folds_total),
        ];
        row.extend(score_cells(run, s));
        rows.push(row);
        if let Some(s) = s {
            groups.entry(other).or_default().push((a, s));
        }
    }
    let mut series = Vec::new();
    for (g, mut pts) in groups {
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        let suffix = if g.is_empty() {
            String::new()
        } else {
            format!(" ({g})")
        };
        series.push(Series {
            label: format!("UF1{suffix}"),
            points: pts.iter().map(|(a, s)| (*a, s.uf1)).collect(),
        });
        series.push(Series {
            label: format!("UAR{suffix}"),
            points: pts.iter().map(|(a, s)| (*a, s.uar)).collect(),
        });
    }
    if !series.is_empty() {
        let png = plots::line_png(
            "UF1 and UAR (all parts pooled) vs focal alpha",
            "alpha",
            "score",
            &series,
            Some((0.0, 1.0)),
        )?;
        b.push(Block::Image {
            file: "alpha_sweep.png".into(),
            caption: "Fig. 4 for this run: pooled UF1 / UAR against the focal-loss alpha".into(),
            png,
        });
    }
    b.push(Block::Table {
        head: score_head(run, &["alpha", "other axes", "folds"]),
        rows,
    });
    Ok(())
}

fn per_point(
    run: &RunData,
    scores: &BTreeMap<u32, ScoreReport>,
    b: &mut Vec<Block>,
) -> Result<(), CoordError> {
    b.push(Block::Heading(2, "Per sweep point".into()));
    for sp in &run.results.sweep_points {
        b.push(Block::Heading(
            3,
            format!("Sweep point {}", point_label(&run.results, sp.index)),
        ));
        if !sp.values.is_empty() {
            let v: Vec<String> = sp
                .values
                .iter()
                .map(|(k, v)| format!("{k} = {}", value_str(v)))
                .collect();
            b.push(Block::Para(format!("Swept values: {}.", v.join(", "))));
        }
        let Some(s) = scores.get(&sp.index) else {
            b.push(Block::Para(sections::NO_FOLD_FINISHED.into()));
            continue;
        };
        b.push(sections::part_scores_table(&run.results.parts, s));
        let rows = s
            .per_class
            .iter()
            .map(|(name, c)| {
                vec![
                    name.clone(),
                    c.support.to_string(),
                    c.tp.to_string(),
                    c.fp.to_string(),
                    c.fn_.to_string(),
                    f4(c.precision),
                    f4(c.recall),
                    f4(c.f1),
                ]
            })
            .collect();
        b.push(Block::Table {
            head: [
                "class",
                "support",
                "TP",
                "FP",
                "FN",
                "precision",
                "recall",
                "F1",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
        let title = format!("Confusion matrix, {} (pooled, n = {})", sp.label, s.n);
        let png = plots::confusion_png(&title, &run.results.classes, &s.confusion)?;
        b.push(Block::Image {
            file: format!("confusion_{}.png", crate::plan::safe_label(&sp.label)),
            caption: title,
            png,
        });
        for w in &sp.warnings {
            b.push(sections::warning(w));
        }
    }
    Ok(())
}

fn per_subject(run: &RunData, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "Per-subject accuracy".into()));
    b.push(Block::Para(
        "Correct / test clips of each held-out subject (for inspection only: scores are never averaged over subjects).".into(),
    ));
    let mut subjects: Vec<(Dataset, String)> = Vec::new();
    let mut cells: BTreeMap<(u32, Dataset, String), (u64, u64)> = BTreeMap::new();
    for (idx, recs) in &run.predictions {
        for r in recs {
            let key = (r.dataset, r.subject.clone());
            if !subjects.contains(&key) {
                subjects.push(key);
            }
            let c = cells
                .entry((*idx, r.dataset, r.subject.clone()))
                .or_insert((0, 0));
            c.1 += 1;
            if r.label == r.pred {
                c.0 += 1;
            }
        }
    }
    let points: Vec<&crate::results::aggregate::SweepPointResult> = run
        .results
        .sweep_points
        .iter()
        .filter(|s| run.predictions.contains_key(&s.index))
        .collect();
    let mut head = vec!["subject".to_string()];
    head.extend(points.iter().map(|s| format!("`{}`", s.label)));
    let rows = subjects
        .iter()
        .map(|(d, s)| {
            let mut row = vec![format!("{d}/{s}")];
            for p in &points {
                row.push(match cells.get(&(p.index, *d, s.clone())) {
                    Some((c, n)) => format!("{c}/{n} ({:.2})", *c as f64 / *n as f64),
                    None => "-".into(),
                });
            }
            row
        })
        .collect();
    b.push(Block::Table { head, rows });
}

/// Mean loss per epoch over the folds of each sweep point, per stage.
pub fn mean_curves(folds: &[FoldRecord]) -> BTreeMap<(String, u32), Vec<(f64, f64)>> {
    let mut acc: BTreeMap<(String, u32), BTreeMap<usize, (f64, usize)>> = BTreeMap::new();
    for f in folds {
        // An epoch logged without a loss (a user method's per-epoch predictions with no progress line for
        // that epoch) has no point on the curve.
        for e in f.result.epochs.iter().filter(|e| e.loss.is_finite()) {
            let c = acc
                .entry((e.stage.clone(), f.sweep_point))
                .or_default()
                .entry(e.epoch)
                .or_insert((0.0, 0));
            c.0 += e.loss;
            c.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, m)| {
            (
                k,
                m.into_iter()
                    .map(|(ep, (s, n))| (ep as f64, s / n as f64))
                    .collect(),
            )
        })
        .collect()
}

/// Per prior epoch, the means over the folds' prior tasks of the siamese loss, the held-out pair
/// accuracy and the unseen-subject pair accuracy (`None` where no fold has that number).
pub fn prior_curves(priors: &[PriorRecord]) -> Vec<(usize, [Option<f64>; 3])> {
    let mut acc: BTreeMap<usize, [(f64, usize); 3]> = BTreeMap::new();
    for r in priors {
        for e in &r.epochs {
            let slot = acc.entry(e.epoch).or_default();
            for (i, v) in [Some(e.loss), e.monitor, e.unseen].into_iter().enumerate() {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    slot[i].0 += v;
                    slot[i].1 += 1;
                }
            }
        }
    }
    acc.into_iter()
        .map(|(ep, s)| (ep, s.map(|(sum, n)| (n > 0).then(|| sum / n as f64))))
        .collect()
}

/// Prior learning's curves: does the siamese stage learn, and do its features carry to unseen people?
fn prior_learning_curves(run: &RunData, b: &mut Vec<Block>) -> Result<(), CoordError> {
    if run.priors.is_empty() {
        return Ok(());
    }
    let curves = prior_curves(&run.priors);
    let names = [
        "siamese loss (training pairs)",
        "pair accuracy, held-out pairs",
        "pair accuracy, unseen subjects",
    ];
    let series: Vec<Series> = (0..3)
        .map(|i| Series {
            label: names[i].to_string(),
            points: curves
                .iter()
                .filter_map(|(ep, v)| v[i].map(|v| (*ep as f64, v)))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    b.push(Block::Para(format!(
        "Prior learning, mean over {} prior task(s). Chance is a loss of ln 2 = 0.693 and a pair accuracy of 0.5. \
         The held-out pairs share clips with the pairs learnt from; the unseen-subject pairs (with \
         `prior.unseen_subjects`) are of clips of training subjects that prior learning never saw, so they \
         say whether the features carry to new people.",
        run.priors.len()
    )));
    let png = plots::line_png(
        "prior learning: mean over folds",
        "epoch",
        "loss / accuracy",
        &series,
        Some((0.0, 1.0)),
    )?;
    b.push(Block::Image {
        file: "prior_learning.png".into(),
        caption:
            "prior stage: siamese loss and pair accuracies per epoch, mean over the prior tasks"
                .into(),
        png,
    });
    let cell = |v: Option<f64>| v.map(f4).unwrap_or_else(|| "-".into());
    let rows = curves
        .iter()
        .map(|(ep, v)| vec![(ep + 1).to_string(), cell(v[0]), cell(v[1]), cell(v[2])])
        .collect();
    b.push(Block::Table {
        head: [
            "prior epoch",
            "siamese loss",
            "held-out pair acc.",
            "unseen-subject pair acc.",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    });
    Ok(())
}

fn training_curves(run: &RunData, b: &mut Vec<Block>) -> Result<(), CoordError> {
    b.push(Block::Heading(2, "Training curves".into()));
    prior_learning_curves(run, b)?;
    if run.folds.is_empty() {
        b.push(Block::Para(
            "No `folds.jsonl` in the run folder: the per-epoch training logs are not available."
                .into(),
        ));
        return Ok(());
    }
    let curves = mean_curves(&run.folds);
    let stages: BTreeSet<&str> = curves.keys().map(|(s, _)| s.as_str()).collect();
    let label = |i: u32| sweep_point(run, i).map_or_else(|| i.to_string(), |s| s.label.clone());
    for stage in stages {
        let series: Vec<Series> = curves
            .iter()
            .filter(|((s, _), _)| s == stage)
            .map(|((_, p), pts)| Series {
                label: label(*p),
                points: pts.clone(),
            })
            .collect();
        let png = plots::line_png(
            &format!("{stage} learning: mean training loss over folds"),
            "epoch",
            "loss",
            &series,
            None,
        )?;
        b.push(Block::Image {
            file: format!("loss_{}.png", crate::plan::safe_label(stage)),
            caption: format!("{stage} stage: training loss per epoch, mean over the finished folds of each sweep point"),
            png,
        });
        let rows = series
            .iter()
            .map(|s| {
                let first = s.points.first().map(|p| f4(p.1)).unwrap_or_default();
                let last = s.points.last().map(|p| f4(p.1)).unwrap_or_default();
                vec![
                    format!("`{}`", s.label),
                    s.points.len().to_string(),
                    first,
                    last,
                ]
            })
            .collect();
        b.push(Block::Table {
            head: [
                "sweep point",
                "epochs",
                "first-epoch loss",
                "last-epoch loss",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
    }
    Ok(())
}

fn provenance(run: &RunData, b: &mut Vec<Block>) {
    let r = &run.results;
    b.push(Block::Heading(2, "Provenance".into()));
    let mut rows = vec![
        vec!["experiment".to_string(), r.experiment.clone()],
        vec!["spec hash".into(), format!("`{}`", r.spec_hash)],
    ];
    // A method of the spec's own: what ran, byte for byte (the files by content hash).
    for sp in &r.sweep_points {
        if let Some(u) = &sp.user_method {
            let files: Vec<String> = u
                .files
                .iter()
                .map(|f| format!("`{}` sha256 `{}`", f.path, f.sha256))
                .collect();
            let inputs: Vec<&str> = u.inputs.iter().map(|i| i.key()).collect();
            rows.push(vec![
                format!("method of the spec's own ({})", sp.label),
                format!(
                    "`{}` on {} (fold contract `{}`), params `{}`; files: {}",
                    u.command.join(" "),
                    inputs.join(", "),
                    mer_shared::user_method::CONTRACT_VERSION,
                    serde_json::to_string(&u.params).unwrap_or_default(),
                    if files.is_empty() {
                        "none".to_string()
                    } else {
                        files.join(", ")
                    }
                ),
            ]);
        }
    }
    if let Some(p) = &run.provenance {
        if let Some(id) = &p.experiment_id {
            rows.push(vec!["experiment id".into(), format!("`{id}`")]);
        }
        rows.push(vec![
            "code version (coordinator)".into(),
            format!("mer {}", p.mer_version),
        ]);
        rows.push(vec![
            "task-key version".into(),
            format!("`{}`", p.task_key_version),
        ]);
        for d in &p.datasets {
            rows.push(vec![
                "prepared dataset".into(),
                format!("`{}` sha256 `{}`", d.path, d.hash),
            ]);
            match &d.info {
                Some(i) => {
                    rows.push(vec![
                        "dataset preparation".into(),
                        format!(
                            "key-frames `{}`{}, interpolator `{}`, crop `{}`, {} frames x {} channels at {} px, prepared by mer {}",
                            i.keyframes,
                            match (i.keyframe_fill_rule(), i.keyframe_fill) {
                                (Some(f), Some(_)) => format!(" (fill `{f}`)"),
                                (Some(f), None) => format!(" (fill `{f}`: not recorded, files of this age used it)"),
                                (None, _) => String::new(),
                            },
                            i.interpolator,
                            i.crop,
                            i.frames,
                            i.channels.join("/"),
                            i.size,
                            i.mer_version
                        ),
                    ]);
                    if !i.flow_params.is_empty() {
                        let fp: Vec<String> = i
                            .flow_params
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        rows.push(vec!["Farneback flow parameters".into(), fp.join(", ")]);
                    }
                }
                None => rows.push(vec![
                    "dataset preparation".into(),
                    "file not readable when the run was written".into(),
                ]),
            }
        }
        for w in &p.workers {
            rows.push(vec![
                "worker".into(),
                format!(
                    "`{}` ({}), devices {}, {} slot(s), mer {}, {} result(s)",
                    w.id,
                    w.name,
                    w.devices.join(","),
                    w.slots,
                    w.version,
                    w.results
                ),
            ]);
        }
    } else {
        rows.push(vec![
            "provenance.json".into(),
            "missing: code version, dataset preparation and workers unknown".into(),
        ]);
    }
    if let Some(plan) = &run.plan {
        let seeds: BTreeSet<u64> = plan.sweep_points.iter().map(|s| s.train.seed).collect();
        rows.push(vec![
            "base seed(s)".into(),
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
                + " (each task's seed = first 8 bytes of sha256(mer-seed/1|base|fold|stage))",
        ]);
        let kf: BTreeSet<&str> = plan
            .sweep_points
            .iter()
            .map(|s| s.keyframes.as_str())
            .collect();
        rows.push(vec![
            "key-frame tags".into(),
            kf.into_iter().collect::<Vec<_>>().join(", "),
        ]);
    }
    let mut devices: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &run.folds {
        *devices.entry(f.result.device.as_str()).or_insert(0) += 1;
    }
    if !devices.is_empty() {
        rows.push(vec![
            "devices (target folds)".into(),
            devices
                .iter()
                .map(|(d, n)| format!("{d} x {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    b.push(Block::Table {
        head: vec!["what".into(), "value".into()],
        rows,
    });
    if !run.folds.is_empty() {
        b.push(Block::Para(
            "Every fold result: its seed, device, worker and wall-clock time.".into(),
        ));
        let label = |i: u32| sweep_point(run, i).map_or("", |s| s.label.as_str());
        let rows = run
            .folds
            .iter()
            .map(|f| {
                vec![
                    f.fold.clone(),
                    format!("`{}`", label(f.sweep_point)),
                    f.result.seed.to_string(),
                    f.result.device.clone(),
                    f.worker.clone().unwrap_or_else(|| "-".into()),
                    format!("{:.1}", f.result.timings.total_s),
                    format!("`{}`", f.task_key.get(..12).unwrap_or(&f.task_key)),
                ]
            })
            .collect();
        b.push(Block::Table {
            head: [
                "fold",
                "sweep point",
                "seed",
                "device",
                "worker",
                "seconds",
                "task key",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
    }
    if let Some(plan) = &run.plan {
        for sp in &plan.sweep_points {
            b.push(Block::Para(format!(
                "Resolved training settings of `{}` (base seed before per-task derivation):",
                sp.label
            )));
            b.push(Block::Code(
                serde_json::to_string(&sp.train).unwrap_or_default(),
            ));
        }
    }
    match &run.spec_toml {
        Some(spec) => {
            b.push(Block::Para("The experiment spec as submitted:".into()));
            b.push(Block::Code(spec.clone()));
        }
        None => b.push(Block::Para("No `spec.toml` in the run folder.".into())),
    }
}

fn exports_section(run: &RunData, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "Exports".into()));
    let mut rows = vec![vec![
        "`exports/results.json`".to_string(),
        "pooled results (schema mer-results/1)".into(),
    ]];
    for (idx, files) in &run.prediction_files {
        for f in files {
            let what = if f.ends_with(".megc.txt") {
                "MEGC2019 prediction log"
            } else {
                "per-sample predictions CSV"
            };
            rows.push(vec![
                format!("`exports/{f}`"),
                format!("{what} of {}", point_label(&run.results, *idx)),
            ]);
        }
    }
    if !run.folds.is_empty() {
        rows.push(vec![
            "`exports/samples.csv`".into(),
            "every sweep point's per-sample predictions with class probabilities".into(),
        ]);
    }
    b.push(Block::Table {
        head: vec!["file".into(), "content".into()],
        rows,
    });
    b.push(Block::Para(
        "`mer score exports/predictions/<label>.megc.txt` reproduces each sweep point's numbers."
            .into(),
    ));
}

fn write_exports(run: &RunData, out: &Path) -> Result<Vec<PathBuf>, CoordError> {
    let mut written = Vec::new();
    let ex = out.join("exports");
    let copy = |rel: &str, written: &mut Vec<PathBuf>| -> Result<(), CoordError> {
        let src = run.dir.join(rel);
        let bytes = std::fs::read(&src).map_err(|e| CoordError::io(&src, e))?;
        let dst = ex.join(rel);
        write_atomic(&dst, &bytes)?;
        written.push(dst);
        Ok(())
    };
    copy("results.json", &mut written)?;
    for files in run.prediction_files.values() {
        for f in files {
            copy(f, &mut written)?;
        }
    }
    if !run.folds.is_empty() {
        let k = run.results.classes.len();
        let label = |i: u32| sweep_point(run, i).map_or("", |s| s.label.as_str());
        let mut csv = String::from("sweep_point,dataset,subject,filename,label,pred,correct");
        for c in &run.results.classes {
            let _ = write!(csv, ",p_{c}");
        }
        csv.push('\n');
        for f in &run.folds {
            for p in &f.result.predictions {
                let r: &PredictionRecord = &p.record;
                let _ = write!(
                    csv,
                    "{},{},{},{},{},{},{}",
                    csv_field(label(f.sweep_point)),
                    r.dataset,
                    r.subject,
                    r.filename,
                    r.label,
                    r.pred,
                    u8::from(r.label == r.pred)
                );
                for i in 0..k {
                    let _ = write!(
                        csv,
                        ",{}",
                        p.probs
                            .get(i)
                            .map(|x| format!("{x:.6}"))
                            .unwrap_or_default()
                    );
                }
                csv.push('\n');
            }
        }
        let dst = ex.join("samples.csv");
        write_atomic(&dst, csv.as_bytes())?;
        written.push(dst);
    }
    Ok(written)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
