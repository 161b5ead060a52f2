//! The blocks `summary.md` and `mer report`'s `report.md` are made of. Every explanation the two
//! documents share (what the scores pool, the protocol, nested selection, the leakage premium) is written
//! here once, as a [`Block`], and both documents take it from here; the summary itself is
//! [`summary_blocks`], rendered by [`crate::results::document::to_markdown`] like the report.

use crate::results::aggregate::ExperimentResults;
use crate::results::document::{to_markdown, Block};
use crate::results::leakage::{self, LeakageDiagnostics, DIAGNOSTIC_LABEL};
use crate::results::selection::{InnerScore, SelectionResults};
use crate::spec::Protocol;
use mer_shared::predictions::ScoreReport;
use mer_shared::user_method::UserMethodTask;
use mer_shared::Dataset;

/// What a document says of a sweep point without any finished fold.
pub const NO_FOLD_FINISHED: &str = "No fold finished yet.";

/// A score with four decimals.
pub fn f4(x: f64) -> String {
    format!("{x:.4}")
}

/// A UF1 / UAR pair with four decimals.
pub fn pair(uf1: f64, uar: f64) -> String {
    format!("{uf1:.4} / {uar:.4}")
}

/// An optional score with four decimals, `-` when absent.
pub fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), f4)
}

/// An optional difference with its sign and four decimals, `-` when absent.
pub fn signed(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:+.4}"))
}

/// Sweep point `idx` as a table cell: its label in code, with the folds done when it is partial.
pub fn point_label(res: &ExperimentResults, idx: u32) -> String {
    match res.sweep_points.iter().find(|s| s.index == idx) {
        Some(s) if s.partial => format!(
            "`{}` (partial {}/{} folds)",
            s.label, s.folds_done, s.folds_total
        ),
        Some(s) => format!("`{}`", s.label),
        None => format!("point {idx}"),
    }
}

/// The sentence both documents open with: scheme, parts, progress and what the scores pool. Each
/// document ends it with where its scores come from.
pub fn scope(res: &ExperimentResults) -> String {
    let parts: Vec<&str> = res.parts.iter().map(|p| p.display_name()).collect();
    format!(
        "Scheme `{}` ({} classes: {}), parts {}, {} sweep point(s); {} of {} fold trainings finished{}. \
         Scores pool the predictions of all finished folds per sweep point (MEGC2019 rules: TP/FP/FN summed \
         over folds, then UF1 and UAR)",
        res.scheme,
        res.classes.len(),
        res.classes.join(", "),
        parts.join(", "),
        res.sweep_points.len(),
        res.tasks_done,
        res.tasks_total,
        if res.partial { " - PARTIAL results" } else { "" }
    ) + &fold_subset(res)
}

/// The sentence that says a run tested only the spec's `folds` (empty when every fold ran).
fn fold_subset(res: &ExperimentResults) -> String {
    let Some(of) = res.folds_of_data else {
        return String::new();
    };
    let ran = res
        .sweep_points
        .iter()
        .map(|s| s.folds_total)
        .max()
        .unwrap_or(0);
    format!(
        ". Only {ran} of the data's {of} test folds ran (the spec's `folds`): the scores pool those folds' \
         test samples, not the whole dataset's"
    )
}

/// The paragraph that names a non-default protocol (none for LOSO, the paper's protocol).
pub fn protocol_note(p: Protocol) -> Option<Block> {
    match p {
        Protocol::Loso => None,
        Protocol::Lodo => Some(Block::Para(
            "Protocol leave one dataset out (`lodo`): each fold tests on every subject of one dataset part \
             and trains on the other parts; the per-part scores are each part's held-out fold."
                .into(),
        )),
    }
}

/// A warning found while pooling or selecting.
pub fn warning(w: &str) -> Block {
    Block::Para(format!("Warning: {w}"))
}

/// n / UF1 / UAR / Acc / macro-F1 of each part of `parts` in `s`, then of all of them.
pub fn part_scores_table(parts: &[Dataset], s: &ScoreReport) -> Block {
    let mut rows = Vec::new();
    for p in parts {
        if let Some(ps) = s.parts.get(p.key()) {
            rows.push(vec![
                p.display_name().to_string(),
                ps.n.to_string(),
                f4(ps.uf1),
                f4(ps.uar),
                f4(ps.acc),
                f4(ps.f1_macro),
            ]);
        }
    }
    rows.push(vec![
        "all".into(),
        s.n.to_string(),
        f4(s.uf1),
        f4(s.uar),
        f4(s.acc),
        f4(s.f1_macro),
    ]);
    Block::Table {
        head: ["part", "n", "UF1", "UAR", "Acc", "macro-F1"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// How nested selection chose, and why its score is a result.
pub fn selection_explanation(sel: &SelectionResults) -> Block {
    Block::Para(format!(
        "For every outer fold, each candidate point of a method was trained on {} subject-grouped inner \
         splits of that fold's training subjects (seed {}; the outer test subject was never seen) and scored by \
         its pooled inner UF1. The fold's *selected* point is the best (ties: higher inner UAR, then the earlier \
         point), and its outer test predictions are the fold's. *Selected* pools those over the outer folds: no \
         test subject influenced it, so it is the honest score of choosing a point. *Oracle epoch* and \
         *oracle point* (chosen on the test subjects) are diagnostics, shown for the premium.",
        sel.inner_folds, sel.seed
    ))
}

/// The leakage premium (`results.json` diagnostics): clean against oracle-epoch scores per point and part,
/// the epochs the oracle chose, and the oracle point per method (against the nested-selection score
/// where it ran). Every heading and caption says that these numbers were chosen on the test subjects.
pub fn leakage_section(res: &ExperimentResults) -> Vec<Block> {
    let Some(d) = &res.diagnostics else {
        return Vec::new();
    };
    let nested = res.selection.is_some();
    let mut b = vec![
        Block::Heading(2, "Leakage premium (diagnostic, not a result)".into()),
        Block::Para(format!(
            "{DIAGNOSTIC_LABEL}. What the field's usual test-set shortcuts would have added to the clean \
             scores above. *Oracle epoch*: each fold stopped at the target epoch with the best accuracy on its \
             own test subject (earliest among ties), then pooled as usual. *Oracle point*: per method, the \
             sweep point with the best pooled test UF1, against the mean of the method's points (what a point \
             chosen without looking scores on average){}. The clean scores (fixed final epoch, every point \
             reported) are the results; these are not.",
            if nested {
                " and against the nested-selection score"
            } else {
                ""
            }
        )),
        oracle_epoch_table(res, d),
    ];
    for o in d
        .oracle_epoch
        .iter()
        .filter(|o| !o.folds_without_epochs.is_empty())
    {
        b.push(Block::Para(format!(
            "`{}`: no oracle epoch: {} finished fold(s) carry no per-epoch test predictions (results \
             written before they were recorded): {}",
            o.label,
            o.folds_without_epochs.len(),
            o.folds_without_epochs.join(", ")
        )));
    }
    if !d.oracle_point.is_empty() {
        b.push(oracle_point_table(res, d, nested));
    }
    b
}

/// Clean against oracle-epoch scores, per sweep point and part, with the epochs the oracle chose.
fn oracle_epoch_table(res: &ExperimentResults, d: &LeakageDiagnostics) -> Block {
    let mut head: Vec<String> = [
        "sweep point",
        "clean UF1 / UAR",
        "oracle epoch UF1 / UAR",
        "premium UF1 / UAR",
    ]
    .map(String::from)
    .to_vec();
    head.extend(
        res.parts
            .iter()
            .map(|p| format!("{} premium UF1", p.display_name())),
    );
    head.push("chosen epochs (min / median / max)".into());
    let mut rows = Vec::new();
    for (sp, o) in res.sweep_points.iter().zip(&d.oracle_epoch) {
        let clean = sp.scores.as_ref();
        let oracle = o.scores.as_ref();
        let mut row = vec![
            point_label(res, sp.index),
            format!(
                "{} / {}",
                opt(clean.map(|s| s.uf1)),
                opt(clean.map(|s| s.uar))
            ),
            format!(
                "{} / {}",
                opt(oracle.map(|s| s.uf1)),
                opt(oracle.map(|s| s.uar))
            ),
            format!("{} / {}", signed(o.premium_uf1), signed(o.premium_uar)),
        ];
        for p in &res.parts {
            row.push(signed(leakage::part_premium_uf1(oracle, clean, p.key())));
        }
        let mut e: Vec<usize> = o.chosen_epochs.values().copied().collect();
        e.sort_unstable();
        row.push(match (e.first(), e.last()) {
            (Some(lo), Some(hi)) => format!("{lo} / {} / {hi}", e[e.len() / 2]),
            _ if !o.folds_without_epochs.is_empty() => format!(
                "{} fold(s) without per-epoch predictions",
                o.folds_without_epochs.len()
            ),
            _ => "no epochs (one candidate)".into(),
        });
        rows.push(row);
    }
    Block::Table { head, rows }
}

/// The oracle point per method, against the mean of its points and, with `nested`, the selected score.
fn oracle_point_table(res: &ExperimentResults, d: &LeakageDiagnostics, nested: bool) -> Block {
    let mut head: Vec<String> = [
        "method",
        "points",
        "oracle point (diagnostic)",
        "its UF1 / UAR",
        "mean of points UF1 / UAR",
        "premium UF1 / UAR",
    ]
    .map(String::from)
    .to_vec();
    if nested {
        head.push("selected UF1 / UAR".into());
        head.push("premium over selected UF1 / UAR".into());
    }
    let rows = d
        .oracle_point
        .iter()
        .map(|p| {
            let mut row = vec![
                p.method.display_name().to_string(),
                p.points.to_string(),
                point_label(res, p.best_index),
                pair(p.best_uf1, p.best_uar),
                pair(p.mean_uf1, p.mean_uar),
                format!("{:+.4} / {:+.4}", p.premium_uf1, p.premium_uar),
            ];
            if nested {
                row.push(format!("{} / {}", opt(p.selected_uf1), opt(p.selected_uar)));
                row.push(format!(
                    "{} / {}",
                    signed(p.premium_over_selected_uf1),
                    signed(p.premium_over_selected_uar)
                ));
            }
            row
        })
        .collect();
    Block::Table { head, rows }
}

/// `summary.md`: the scope, one overview table (a row per sweep point: UF1/UAR per part and all), per
/// sweep point a table of n / UF1 / UAR / Acc / macro-F1 per part, then nested selection, the leakage
/// premium and the methods of the spec's own where there are any.
pub fn summary_blocks(res: &ExperimentResults) -> Vec<Block> {
    let mut b = vec![
        Block::Heading(1, res.experiment.clone()),
        Block::Para(format!("{}.", scope(res))),
    ];
    b.extend(protocol_note(res.protocol));
    b.push(overview_table(res));
    for sp in &res.sweep_points {
        b.push(Block::Heading(
            2,
            format!(
                "`{}` ({}, {:.0} s of fold training)",
                sp.label,
                sp.method.display_name(),
                sp.train_seconds
            ),
        ));
        if sp.partial {
            b.push(Block::Para(format!(
                "Partial: {} of {} folds finished.",
                sp.folds_done, sp.folds_total
            )));
        }
        let Some(s) = &sp.scores else {
            b.push(Block::Para(NO_FOLD_FINISHED.into()));
            continue;
        };
        b.push(part_scores_table(&res.parts, s));
        b.extend(sp.warnings.iter().map(|w| warning(w)));
    }
    if let Some(sel) = &res.selection {
        b.extend(selection_summary(res, sel));
    }
    b.extend(leakage_section(res));
    b.extend(user_methods(res));
    b
}

/// `summary.md` as Markdown.
pub fn summary_markdown(res: &ExperimentResults) -> String {
    to_markdown(&summary_blocks(res))
}

/// Per-part and whole-set UF1 / UAR columns' header cells, after `first`.
fn uf1_uar_head(res: &ExperimentResults, first: &[&str]) -> Vec<String> {
    let mut head: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    for p in &res.parts {
        head.push(format!("{} UF1", p.display_name()));
        head.push(format!("{} UAR", p.display_name()));
    }
    head
}

/// UF1 and UAR of each part of `s` (`-` when missing).
fn uf1_uar_cells(res: &ExperimentResults, s: Option<&ScoreReport>) -> Vec<String> {
    let mut row = Vec::new();
    for p in &res.parts {
        let ps = s.and_then(|s| s.parts.get(p.key()));
        row.push(opt(ps.map(|x| x.uf1)));
        row.push(opt(ps.map(|x| x.uar)));
    }
    row
}

/// One row per sweep point: method, folds done, UF1 / UAR per part and of all.
fn overview_table(res: &ExperimentResults) -> Block {
    let mut head = uf1_uar_head(res, &["sweep point", "method", "folds"]);
    head.push("all UF1".into());
    head.push("all UAR".into());
    let rows = res
        .sweep_points
        .iter()
        .map(|sp| {
            let mark = if sp.partial { " (partial)" } else { "" };
            let mut row = vec![
                format!("`{}`{mark}", sp.label),
                sp.method.display_name().to_string(),
                format!("{}/{}", sp.folds_done, sp.folds_total),
            ];
            row.extend(uf1_uar_cells(res, sp.scores.as_ref()));
            row.push(opt(sp.scores.as_ref().map(|s| s.uf1)));
            row.push(opt(sp.scores.as_ref().map(|s| s.uar)));
            row
        })
        .collect();
    Block::Table { head, rows }
}

/// The summary's nested-selection section: per method the selected score (pooled over the outer folds)
/// and how often each candidate was chosen, then each outer fold's choice.
fn selection_summary(res: &ExperimentResults, sel: &SelectionResults) -> Vec<Block> {
    let mut b = vec![
        Block::Heading(2, "Nested selection (a result)".into()),
        selection_explanation(sel),
    ];
    let mut head = uf1_uar_head(res, &["method", "folds"]);
    head.extend(["selected UF1", "selected UAR", "chosen (folds per point)"].map(String::from));
    let rows = sel
        .methods
        .iter()
        .map(|m| {
            let s = m.scores.as_ref();
            let mut row = vec![
                format!(
                    "{}{}",
                    m.method.display_name(),
                    if m.partial { " (partial)" } else { "" }
                ),
                format!("{}/{}", m.folds_done, m.folds_total),
            ];
            row.extend(uf1_uar_cells(res, s));
            let chosen: Vec<String> = m
                .labels
                .iter()
                .zip(&m.times_chosen)
                .map(|(l, n)| format!("`{l}` {n}"))
                .collect();
            row.push(opt(s.map(|x| x.uf1)));
            row.push(opt(s.map(|x| x.uar)));
            row.push(chosen.join(", "));
            row
        })
        .collect();
    b.push(Block::Table { head, rows });
    for m in &sel.methods {
        let labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
        b.push(Block::Para(format!(
            "{}: outer fold -> selected point (pooled inner UF1 per point: {})",
            m.method.display_name(),
            labels.join(", ")
        )));
        let lines: Vec<String> = m
            .folds
            .iter()
            .map(|fs| {
                let inner: Vec<String> = fs.inner.iter().map(InnerScore::cell).collect();
                format!(
                    "- {} -> {} ({})",
                    fs.fold,
                    fs.selected_label
                        .as_deref()
                        .map_or_else(|| "not yet chosen".to_string(), |l| format!("`{l}`")),
                    inner.join(", ")
                )
            })
            .collect();
        if !lines.is_empty() {
            b.push(Block::Para(lines.join("\n")));
        }
    }
    b.extend(sel.warnings.iter().map(|w| warning(w)));
    b
}

/// What ran as each method of the spec's own: its command, inputs, params per point and files with
/// their sha256 (nothing when the spec has none).
fn user_methods(res: &ExperimentResults) -> Vec<Block> {
    let points: Vec<(&str, &UserMethodTask)> = res
        .sweep_points
        .iter()
        .filter_map(|sp| sp.user_method.as_ref().map(|u| (sp.label.as_str(), u)))
        .collect();
    if points.is_empty() {
        return Vec::new();
    }
    let rows = points
        .into_iter()
        .map(|(label, u)| {
            let inputs: Vec<&str> = u.inputs.iter().map(|i| i.key()).collect();
            let files: Vec<String> = u
                .files
                .iter()
                .map(|f| format!("`{}` {}", f.path, &f.sha256[..f.sha256.len().min(12)]))
                .collect();
            vec![
                label.to_string(),
                format!("`{}`", u.command.join(" ")),
                inputs.join(", "),
                format!("`{}`", serde_json::to_string(&u.params).unwrap_or_default()),
                files.join("<br>"),
            ]
        })
        .collect();
    vec![
        Block::Heading(2, "Methods of the spec's own".into()),
        Block::Para(
            "Each ran as a command on the fold contract (`mer-fold/1`, docs/own-model.md): the test side \
             of every fold reached it without labels."
                .into(),
        ),
        Block::Table {
            head: ["point", "command", "inputs", "params", "files (sha256)"]
                .map(String::from)
                .to_vec(),
            rows,
        },
    ]
}
