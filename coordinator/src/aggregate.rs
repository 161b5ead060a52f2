//! Aggregation of fold results into experiment results: per sweep point, the predictions of every
//! finished fold are pooled and scored once (UF1, UAR, Acc, macro-F1 for the whole set and each dataset
//! part, exactly as `mer score` does) - never averaged over folds. Partial results are labelled with the
//! folds done / total. [`write_results`] writes `results.json`, `summary.md` and per-point prediction files.

use crate::error::CoordError;
use crate::leakage::{self, LeakageDiagnostics, DIAGNOSTIC_LABEL};
use crate::plan::Plan;
use crate::selection::{self, InnerScore, SelectionResults};
use crate::spec::Protocol;
use mer_shared::fold::FoldResult;
use mer_shared::loso::Role;
use mer_shared::megc_log;
use mer_shared::method::Method;
use mer_shared::metrics::Confusion;
use mer_shared::predictions::{to_csv, PredictionRecord, ScoreReport};
use mer_shared::prepared::write_atomic;
use mer_shared::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Version tag of the `results.json` schema (documented in `docs/experiments.md`).
pub const RESULTS_SCHEMA: &str = "mer-results/1";

/// The results of one experiment (`results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// Always [`RESULTS_SCHEMA`].
    pub schema: String,
    /// Experiment name.
    pub experiment: String,
    /// Hash of the spec the plan came from.
    pub spec_hash: String,
    /// Label scheme.
    pub scheme: LabelScheme,
    /// Class names of the scheme, by index.
    pub classes: Vec<String>,
    /// Dataset parts included.
    pub parts: Vec<Dataset>,
    /// The evaluation protocol (results written before LODO existed read as LOSO).
    #[serde(default)]
    pub protocol: Protocol,
    /// Target tasks finished / planned, over all sweep points.
    pub tasks_done: usize,
    /// Target tasks planned.
    pub tasks_total: usize,
    /// True while any sweep point is partial.
    pub partial: bool,
    /// One entry per sweep point, in plan order.
    pub sweep_points: Vec<SweepPointResult>,
    /// The leakage premium (oracle epoch, oracle point): diagnostics chosen on the test subjects, never
    /// results ([`crate::leakage`]). Absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<LeakageDiagnostics>,
    /// Nested selection's choices and the pooled score of the chosen points ([`crate::selection`]); a
    /// result, since no test subject influenced it. Absent without `[selection] mode = "nested"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionResults>,
}

/// The pooled results of one sweep point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPointResult {
    /// Sweep point index.
    pub index: u32,
    /// Sweep point label (also the prediction files' stem).
    pub label: String,
    /// The swept values.
    pub values: BTreeMap<String, Value>,
    /// The recognition method (results written before methods existed read as MERSiamC3D).
    #[serde(default)]
    pub method: Method,
    /// A method of the spec's own: its command, files (with their sha256), inputs and this point's params
    /// (absent for the built-ins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_method: Option<mer_shared::user_method::UserMethodTask>,
    /// Key-frame tag of the point's prepared file (recorded even when not swept).
    #[serde(default)]
    pub keyframes: String,
    /// sha256 of the point's prepared file.
    #[serde(default)]
    pub dataset_hash: String,
    /// Folds whose target task finished.
    pub folds_done: usize,
    /// Folds planned.
    pub folds_total: usize,
    /// True when `folds_done < folds_total`: the scores cover only the finished folds.
    pub partial: bool,
    /// Folds not finished yet (`dataset/subject`).
    pub missing_folds: Vec<String>,
    /// Pooled scores (whole set in the top-level fields, each part in `parts`); `None` before any fold
    /// finished.
    pub scores: Option<ScoreReport>,
    /// Sum of the finished folds' wall-clock seconds (target tasks).
    pub train_seconds: f64,
    /// Inconsistencies found while pooling (e.g. a fold's confusion counts that disagree with its
    /// predictions); empty when all is well.
    pub warnings: Vec<String>,
    /// Every pooled prediction, grouped by fold in plan order, by file name within a fold. Written to the
    /// prediction files, left out of `results.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predictions: Vec<PredictionRecord>,
}

/// Pools the finished target results of `plan` (keyed by task key; other keys are ignored).
pub fn aggregate(plan: &Plan, results: &BTreeMap<String, FoldResult>) -> ExperimentResults {
    let k = plan.scheme.num_classes();
    let mut points = Vec::new();
    let (mut done_all, mut total_all) = (0, 0);
    for sp in &plan.sweep_points {
        let mut folds_done = 0;
        let mut folds_total = 0;
        let mut missing = Vec::new();
        let mut warnings = Vec::new();
        let mut records: Vec<PredictionRecord> = Vec::new();
        let mut counted = Confusion::new(k);
        let mut seconds = 0.0;
        let mut seen_folds = BTreeSet::new();
        for task in plan.targets_of(sp.index) {
            if !seen_folds.insert(task.fold.as_str()) {
                warnings.push(format!(
                    "fold {} has two target tasks in this sweep point; the second is ignored",
                    task.fold
                ));
                continue;
            }
            folds_total += 1;
            let Some(res) = results.get(&task.key) else {
                missing.push(task.fold.clone());
                continue;
            };
            if res.test_subject != task.fold {
                warnings.push(format!(
                    "result of task {} is for {}, expected {}; ignored",
                    short(&task.key),
                    res.test_subject,
                    task.fold
                ));
                missing.push(task.fold.clone());
                continue;
            }
            let held = task.payload.held_out();
            let mut fold_recs: Vec<PredictionRecord> = Vec::new();
            let mut fold_conf = Confusion::new(k);
            let mut bad = None;
            for p in &res.predictions {
                let r = &p.record;
                if held.role(&format!("{}/{}", r.dataset, r.subject)) != Role::Test {
                    bad = Some(format!(
                        "fold {}: prediction {} belongs to another subject",
                        task.fold, p.id
                    ));
                    break;
                }
                if let Err(e) = fold_conf.add(r.label, r.pred) {
                    bad = Some(format!("fold {}: prediction {}: {e}", task.fold, p.id));
                    break;
                }
                fold_recs.push(r.clone());
            }
            if let Some(b) = bad {
                warnings.push(format!("{b}; fold ignored"));
                missing.push(task.fold.clone());
                continue;
            }
            if res.confusion != fold_conf {
                warnings.push(format!("fold {}: reported confusion counts disagree with its predictions (predictions used)", task.fold));
            }
            // Merging same-size matrices cannot fail.
            let _ = counted.merge(&fold_conf);
            fold_recs.sort_by(|a, b| a.filename.cmp(&b.filename));
            records.extend(fold_recs);
            seconds += res.timings.total_s;
            folds_done += 1;
        }
        let scores = if records.is_empty() {
            None
        } else {
            match ScoreReport::compute(plan.scheme, &records) {
                Ok(r) => Some(r),
                Err(e) => {
                    warnings.push(format!("scoring failed: {e}"));
                    None
                }
            }
        };
        done_all += folds_done;
        total_all += folds_total;
        points.push(SweepPointResult {
            index: sp.index,
            label: sp.label.clone(),
            values: sp.values.clone(),
            method: sp.method.clone(),
            user_method: match &sp.baseline {
                Some(mer_shared::method::BaselineSettings::User(u)) => Some(u.clone()),
                _ => None,
            },
            keyframes: sp.keyframes.clone(),
            dataset_hash: sp.dataset_hash.clone(),
            folds_done,
            folds_total,
            partial: folds_done < folds_total,
            missing_folds: missing,
            scores,
            train_seconds: seconds,
            warnings,
            predictions: records,
        });
    }
    let clean: Vec<leakage::CleanPoint<'_>> = points
        .iter()
        .map(|p| leakage::CleanPoint {
            index: p.index,
            label: &p.label,
            method: p.method.clone(),
            partial: p.partial,
            missing_folds: &p.missing_folds,
            scores: p.scores.as_ref(),
        })
        .collect();
    let mut diagnostics = leakage::diagnose(plan, results, &clean);
    let selection = selection::select(plan, results);
    if let Some(sel) = &selection {
        for o in &mut diagnostics.oracle_point {
            let chosen = sel.methods.iter().find(|m| m.method == o.method);
            if let Some(s) = chosen
                .filter(|m| !m.partial)
                .and_then(|m| m.scores.as_ref())
            {
                o.set_selected(s.uf1, s.uar);
            }
        }
    }
    let diagnostics = Some(diagnostics);
    ExperimentResults {
        schema: RESULTS_SCHEMA.into(),
        experiment: plan.experiment.clone(),
        spec_hash: plan.spec_hash.clone(),
        scheme: plan.scheme,
        classes: plan
            .scheme
            .class_names(None)
            .into_iter()
            .map(String::from)
            .collect(),
        parts: plan.parts.clone(),
        protocol: plan.protocol,
        tasks_done: done_all,
        tasks_total: total_all,
        partial: points.iter().any(|p| p.partial),
        sweep_points: points,
        diagnostics,
        selection,
    }
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// The Markdown summary: one overview table (a row per sweep point: UF1/UAR per part and composite) and,
/// per sweep point, a table of n / UF1 / UAR / Acc / macro-F1 per part.
/// The sentence that names a non-default protocol in the summary and the report (empty for LOSO, the
/// paper's protocol, so LOSO summaries read as before).
pub fn protocol_note(p: Protocol) -> String {
    match p {
        Protocol::Loso => String::new(),
        Protocol::Lodo => "Protocol **leave one dataset out** (`lodo`): each fold tests on every subject of one dataset part and trains on the other parts; the per-part scores are each part's held-out fold.\n\n".into(),
    }
}

pub fn summary_markdown(res: &ExperimentResults) -> String {
    let mut out = format!("# {}\n\n", res.experiment);
    out += &format!(
        "Scheme `{}`, parts {}; {} of {} fold trainings finished{}. Scores pool the predictions of all finished folds (MEGC2019 rules).\n\n{}",
        res.scheme,
        res.parts.iter().map(|p| p.display_name()).collect::<Vec<_>>().join(", "),
        res.tasks_done,
        res.tasks_total,
        if res.partial { " - **PARTIAL results**" } else { "" },
        protocol_note(res.protocol)
    );
    let mut head = "| sweep point | method | folds |".to_string();
    let mut rule = "|---|---|---|".to_string();
    for p in &res.parts {
        head += &format!(" {} UF1 | {} UAR |", p.display_name(), p.display_name());
        rule += "---|---|";
    }
    head += " all UF1 | all UAR |\n";
    rule += "---|---|\n";
    out += &head;
    out += &rule;
    let f = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    for sp in &res.sweep_points {
        let mark = if sp.partial { " (partial)" } else { "" };
        out += &format!(
            "| `{}`{mark} | {} | {}/{} |",
            sp.label,
            sp.method.display_name(),
            sp.folds_done,
            sp.folds_total
        );
        for p in &res.parts {
            let ps = sp.scores.as_ref().and_then(|s| s.parts.get(p.key()));
            out += &format!(" {} | {} |", f(ps.map(|x| x.uf1)), f(ps.map(|x| x.uar)));
        }
        out += &format!(
            " {} | {} |\n",
            f(sp.scores.as_ref().map(|s| s.uf1)),
            f(sp.scores.as_ref().map(|s| s.uar))
        );
    }
    for sp in &res.sweep_points {
        out += &format!(
            "\n## `{}` ({}, {:.0} s of fold training)\n\n",
            sp.label,
            sp.method.display_name(),
            sp.train_seconds
        );
        if sp.partial {
            out += &format!(
                "**Partial**: {} of {} folds finished.\n\n",
                sp.folds_done, sp.folds_total
            );
        }
        let Some(s) = &sp.scores else {
            out += "No fold finished yet.\n";
            continue;
        };
        out += "| part | n | UF1 | UAR | Acc | macro-F1 |\n|---|---|---|---|---|---|\n";
        for p in &res.parts {
            if let Some(ps) = s.parts.get(p.key()) {
                out += &format!(
                    "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
                    p.display_name(),
                    ps.n,
                    ps.uf1,
                    ps.uar,
                    ps.acc,
                    ps.f1_macro
                );
            }
        }
        out += &format!(
            "| **all** | {} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            s.n, s.uf1, s.uar, s.acc, s.f1_macro
        );
        for w in &sp.warnings {
            out += &format!("\n> warning: {w}\n");
        }
    }
    if let Some(sel) = &res.selection {
        out += &selection_markdown(res, sel);
    }
    if let Some(d) = &res.diagnostics {
        out += &diagnostics_markdown(res, d);
    }
    out += &user_methods_markdown(res);
    out
}

/// What ran as each method of the spec's own: its command, inputs, params per point and files with
/// their sha256 (empty when the spec has none).
pub fn user_methods_markdown(res: &ExperimentResults) -> String {
    let points: Vec<(&str, &mer_shared::user_method::UserMethodTask)> = res
        .sweep_points
        .iter()
        .filter_map(|sp| sp.user_method.as_ref().map(|u| (sp.label.as_str(), u)))
        .collect();
    if points.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n## Methods of the spec's own\n\nEach ran as a command on the fold contract (`mer-fold/1`, docs/own-model.md): \
         the test side of every fold reached it without labels.\n\n\
         | point | command | inputs | params | files (sha256) |\n|---|---|---|---|---|\n",
    );
    for (label, u) in points {
        let inputs: Vec<&str> = u.inputs.iter().map(|i| i.key()).collect();
        let files: Vec<String> = u
            .files
            .iter()
            .map(|f| format!("`{}` {}", f.path, &f.sha256[..f.sha256.len().min(12)]))
            .collect();
        out += &format!(
            "| {label} | `{}` | {} | `{}` | {} |\n",
            u.command.join(" "),
            inputs.join(", "),
            serde_json::to_string(&u.params).unwrap_or_default(),
            files.join("<br>")
        );
    }
    out
}

/// The nested-selection section of the summary: per method the selected score (pooled over the outer
/// folds), how often each candidate was chosen, and each outer fold's choice.
fn selection_markdown(res: &ExperimentResults, sel: &SelectionResults) -> String {
    let f = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "\n## Nested selection (a result)\n\nPer outer fold, each method's point with the best pooled inner UF1 \
         over {} subject-grouped inner splits of the fold's training subjects (seed {}; ties: inner UAR, then \
         the earlier point); *selected* pools the chosen points' outer test predictions. No test subject \
         influenced it.\n\n",
        sel.inner_folds, sel.seed
    );
    let mut head = "| method | folds |".to_string();
    let mut rule = "|---|---|".to_string();
    for p in &res.parts {
        head += &format!(" {} UF1 | {} UAR |", p.display_name(), p.display_name());
        rule += "---|---|";
    }
    out += &format!(
        "{head} selected UF1 | selected UAR | chosen (folds per point) |\n{rule}---|---|---|\n"
    );
    for m in &sel.methods {
        let s = m.scores.as_ref();
        out += &format!(
            "| {}{} | {}/{} |",
            m.method.display_name(),
            if m.partial { " (partial)" } else { "" },
            m.folds_done,
            m.folds_total
        );
        for p in &res.parts {
            let ps = s.and_then(|s| s.parts.get(p.key()));
            out += &format!(" {} | {} |", f(ps.map(|x| x.uf1)), f(ps.map(|x| x.uar)));
        }
        let chosen: Vec<String> = m
            .labels
            .iter()
            .zip(&m.times_chosen)
            .map(|(l, n)| format!("`{l}` {n}"))
            .collect();
        out += &format!(
            " {} | {} | {} |\n",
            f(s.map(|x| x.uf1)),
            f(s.map(|x| x.uar)),
            chosen.join(", ")
        );
    }
    for m in &sel.methods {
        out += &format!(
            "\n{}: outer fold -> selected point (pooled inner UF1 per point: {})\n\n",
            m.method.display_name(),
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for fs in &m.folds {
            let inner: Vec<String> = fs.inner.iter().map(InnerScore::cell).collect();
            out += &format!(
                "- {} -> {} ({})\n",
                fs.fold,
                fs.selected_label
                    .as_deref()
                    .map_or_else(|| "not yet chosen".to_string(), |l| format!("`{l}`")),
                inner.join(", ")
            );
        }
    }
    for w in &sel.warnings {
        out += &format!("\n> warning: {w}\n");
    }
    out
}

/// The leakage section of the summary: clean against oracle-epoch scores per point and part, and the
/// oracle point per method; headed and labelled as diagnostics.
fn diagnostics_markdown(res: &ExperimentResults, d: &LeakageDiagnostics) -> String {
    let f = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let sf = |x: Option<f64>| x.map(|v| format!("{v:+.4}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "\n## Leakage premium ({DIAGNOSTIC_LABEL})\n\nWhat the usual test-set shortcuts would have added. \
         *Clean* is the result above (fixed final epoch). *Oracle epoch* stops each fold at the epoch with \
         the best accuracy on its own test subject. Neither oracle is a result.\n\n"
    );
    out +=
        "| sweep point | method | clean UF1 / UAR | oracle epoch UF1 / UAR | premium UF1 / UAR |";
    let mut rule = "|---|---|---|---|---|".to_string();
    for p in &res.parts {
        out += &format!(" {} premium UF1 |", p.display_name());
        rule += "---|";
    }
    out += &format!("\n{rule}\n");
    for (sp, o) in res.sweep_points.iter().zip(&d.oracle_epoch) {
        let clean = sp.scores.as_ref();
        let oracle = o.scores.as_ref();
        out += &format!(
            "| `{}` | {} | {} / {} | {} / {} | {} / {} |",
            sp.label,
            sp.method.display_name(),
            f(clean.map(|s| s.uf1)),
            f(clean.map(|s| s.uar)),
            f(oracle.map(|s| s.uf1)),
            f(oracle.map(|s| s.uar)),
            sf(o.premium_uf1),
            sf(o.premium_uar)
        );
        for p in &res.parts {
            out += &format!(
                " {} |",
                sf(leakage::part_premium_uf1(oracle, clean, p.key()))
            );
        }
        out += "\n";
    }
    for o in d
        .oracle_epoch
        .iter()
        .filter(|o| !o.folds_without_epochs.is_empty())
    {
        out += &format!(
            "\n> `{}`: no oracle epoch: {} finished fold(s) carry no per-epoch test predictions (results \
             written before they were recorded): {}\n",
            o.label,
            o.folds_without_epochs.len(),
            o.folds_without_epochs.join(", ")
        );
    }
    if !d.oracle_point.is_empty() {
        // The selected columns only where nested selection ran.
        let nested = res.selection.is_some();
        out += "\n*Oracle point*: per method, the sweep point with the best pooled test UF1, against the mean \
                of the method's points (what a point chosen without looking scores on average)";
        out += if nested {
            " and against the nested-selection score.\n\n"
        } else {
            ".\n\n"
        };
        out += "| method | points | oracle point | UF1 / UAR | mean of points UF1 / UAR | premium UF1 / UAR |";
        out += if nested {
            " selected UF1 / UAR | premium over selected UF1 / UAR |\n|---|---|---|---|---|---|---|---|\n"
        } else {
            "\n|---|---|---|---|---|---|\n"
        };
        for p in &d.oracle_point {
            out += &format!(
                "| {} | {} | `{}` | {:.4} / {:.4} | {:.4} / {:.4} | {:+.4} / {:+.4} |",
                p.method.display_name(),
                p.points,
                p.best_label,
                p.best_uf1,
                p.best_uar,
                p.mean_uf1,
                p.mean_uar,
                p.premium_uf1,
                p.premium_uar,
            );
            if nested {
                out += &format!(
                    " {} / {} | {} / {} |",
                    f(p.selected_uf1),
                    f(p.selected_uar),
                    sf(p.premium_over_selected_uf1),
                    sf(p.premium_over_selected_uar)
                );
            }
            out += "\n";
        }
    }
    out
}

/// Writes `results.json`, `summary.md`, and `predictions/<label>.megc.txt` + `.csv` per sweep point with
/// at least one finished fold into `dir`, each atomically.
pub fn write_results(dir: &Path, res: &ExperimentResults) -> Result<(), CoordError> {
    for sp in &res.sweep_points {
        if sp.predictions.is_empty() {
            continue;
        }
        let stem = crate::plan::safe_label(&sp.label);
        let pdir = dir.join("predictions");
        write_atomic(
            &pdir.join(format!("{stem}.megc.txt")),
            megc_log::write(&sp.predictions).as_bytes(),
        )?;
        write_atomic(
            &pdir.join(format!("{stem}.csv")),
            to_csv(&sp.predictions).as_bytes(),
        )?;
    }
    let mut lean = res.clone();
    for sp in &mut lean.sweep_points {
        sp.predictions.clear();
    }
    let json =
        serde_json::to_string_pretty(&lean).map_err(|e| CoordError::json("results.json", e))?;
    write_atomic(&dir.join("results.json"), format!("{json}\n").as_bytes())?;
    write_atomic(&dir.join("summary.md"), summary_markdown(res).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, tests::composite_summary, TaskDef, TaskKind};
    use crate::spec::parse_spec;
    use mer_shared::fold::{SamplePrediction, Timings};
    use mer_shared::prediction_file::parse_any;

    fn plan() -> Plan {
        let spec = parse_spec(
            "s.toml",
            "name = \"agg\"\ndataset = \"d\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n",
        )
        .unwrap();
        expand(&spec, &composite_summary("adaptive")).unwrap()
    }

    /// A deterministic fake result for a task: predicts the true class except for every third sample
    /// (shifted by the sweep point so the two points score differently).
    fn result_for(plan: &Plan, t: &TaskDef) -> FoldResult {
        let ds = composite_summary("adaptive");
        let shift = t.sweep_point.unwrap_or(0) as usize + 1;
        let mut conf = Confusion::new(3);
        let preds: Vec<SamplePrediction> = ds
            .samples
            .iter()
            .filter(|s| s.fold_key() == t.fold)
            .enumerate()
            .map(|(i, s)| {
                let label = s.labels["megc3"];
                let pred = if i % 3 == 0 {
                    (label + shift) % 3
                } else {
                    label
                };
                conf.add(label, pred).unwrap();
                SamplePrediction::new(s, label, pred, vec![0.0; 3])
            })
            .collect();
        let _ = plan;
        FoldResult {
            test_subject: t.fold.clone(),
            scheme: "megc3".into(),
            seed: t.payload.train.seed,
            device: "cpu".into(),
            predictions: preds,
            confusion: conf,
            epochs: vec![],
            timings: Timings {
                total_s: 1.5,
                ..Default::default()
            },
        }
    }

    fn all_results(p: &Plan) -> BTreeMap<String, FoldResult> {
        p.tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target)
            .map(|t| (t.key.clone(), result_for(p, t)))
            .collect()
    }

    #[test]
    fn pooled_scores_equal_mer_score_on_the_written_files() {
        let p = plan();
        let res = aggregate(&p, &all_results(&p));
        assert!(!res.partial);
        assert_eq!((res.tasks_done, res.tasks_total), (136, 136));
        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), &res).unwrap();
        for sp in &res.sweep_points {
            let s = sp.scores.as_ref().unwrap();
            assert_eq!(s.n, 442);
            assert_eq!(s.parts.len(), 3);
            assert_eq!(sp.folds_done, 68);
            // What `mer score` computes from either written file equals the aggregated report.
            for ext in ["csv", "megc.txt"] {
                let f = dir
                    .path()
                    .join("predictions")
                    .join(format!("{}.{ext}", sp.label));
                let text = std::fs::read_to_string(&f).unwrap();
                let recs = parse_any(&f.display().to_string(), &text, LabelScheme::Megc3).unwrap();
                assert_eq!(
                    &ScoreReport::compute(LabelScheme::Megc3, &recs).unwrap(),
                    s,
                    "{ext}"
                );
            }
            assert!(sp.warnings.is_empty(), "{:?}", sp.warnings);
            assert!((sp.train_seconds - 68.0 * 1.5).abs() < 1e-9);
        }
        assert_ne!(res.sweep_points[0].scores, res.sweep_points[1].scores);
        // The pooled score differs from the mean of per-fold scores (folds are very unequal).
        let sp = &res.sweep_points[0];
        let per_fold_mean: f64 = p
            .targets_of(0)
            .map(|t| {
                let r = result_for(&p, t);
                r.confusion.scores().uf1
            })
            .sum::<f64>()
            / 68.0;
        assert!((per_fold_mean - sp.scores.as_ref().unwrap().uf1).abs() > 1e-3);
        // results.json parses back; it carries no per-sample predictions.
        let json = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
        let back: ExperimentResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back.schema, RESULTS_SCHEMA);
        assert_eq!(back.sweep_points[0].keyframes, "adaptive");
        assert!(back.sweep_points.iter().all(|s| s.predictions.is_empty()));
        assert_eq!(back.sweep_points[0].scores, res.sweep_points[0].scores);
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(
            md.contains("| `alpha=1` | MERSiamC3D | 68/68 |") && !md.contains("partial"),
            "{md}"
        );
    }

    #[test]
    fn partial_results_are_labelled_and_order_independent() {
        let p = plan();
        let all = all_results(&p);
        // Only the first 10 folds of point 0 and none of point 1.
        let some: BTreeMap<String, FoldResult> = p
            .targets_of(0)
            .take(10)
            .map(|t| (t.key.clone(), all[&t.key].clone()))
            .collect();
        let res = aggregate(&p, &some);
        assert!(res.partial);
        assert_eq!((res.tasks_done, res.tasks_total), (10, 136));
        let (a, b) = (&res.sweep_points[0], &res.sweep_points[1]);
        assert!(a.partial && a.folds_done == 10 && a.missing_folds.len() == 58);
        assert!(b.partial && b.folds_done == 0 && b.scores.is_none());
        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), &res).unwrap();
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(
            md.contains("| `alpha=1` (partial) | MERSiamC3D | 10/68 |"),
            "{md}"
        );
        assert!(md.contains("PARTIAL"), "{md}");
        assert!(dir.path().join("predictions/alpha=1.megc.txt").exists());
        assert!(!dir.path().join("predictions/alpha=2.megc.txt").exists());
        // Results of foreign tasks are ignored; a result for the wrong fold is flagged, not pooled.
        let mut noisy = all.clone();
        noisy.insert("not-a-task".into(), all.values().next().unwrap().clone());
        assert_eq!(aggregate(&p, &noisy), aggregate(&p, &all));
        let t0 = p.targets_of(0).next().unwrap();
        let t1 = p.targets_of(0).nth(1).unwrap();
        noisy.insert(t0.key.clone(), all[&t1.key].clone());
        let r = aggregate(&p, &noisy);
        assert_eq!(r.sweep_points[0].folds_done, 67);
        assert!(
            r.sweep_points[0].warnings[0].contains("expected"),
            "{:?}",
            r.sweep_points[0].warnings
        );
    }

    #[test]
    fn inconsistent_confusion_counts_are_reported() {
        let p = plan();
        let mut all = all_results(&p);
        let t0 = p.targets_of(0).next().unwrap().key.clone();
        if let Some(r) = all.get_mut(&t0) {
            r.confusion = Confusion::new(3);
        }
        let res = aggregate(&p, &all);
        assert_eq!(res.sweep_points[0].scores.as_ref().unwrap().n, 442);
        assert_eq!(res.sweep_points[0].warnings.len(), 1);
    }
}
