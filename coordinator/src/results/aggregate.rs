//! Aggregation of fold results into experiment results: per sweep point, the predictions of every
//! finished fold are pooled and scored once (UF1, UAR, Acc, macro-F1 for the whole set and each dataset
//! part, exactly as `mer score` does) - never averaged over folds. Partial results are labelled with the
//! folds done / total. [`crate::results::writer`] writes them.

use crate::plan::Plan;
use crate::results::leakage::{self, LeakageDiagnostics};
use crate::results::selection::{self, SelectionResults};
use crate::spec::Protocol;
use mer_shared::fold::FoldResult;
use mer_shared::loso::Role;
use mer_shared::method::Method;
use mer_shared::metrics::Confusion;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use mer_shared::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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
    /// How many folds the data has, when the spec's `folds` ran a subset of them (`None`: every fold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds_of_data: Option<usize>,
    /// Target tasks finished / planned, over all sweep points.
    pub tasks_done: usize,
    /// Target tasks planned.
    pub tasks_total: usize,
    /// True while any sweep point is partial.
    pub partial: bool,
    /// One entry per sweep point, in plan order.
    pub sweep_points: Vec<SweepPointResult>,
    /// The leakage premium (oracle epoch, oracle point): diagnostics chosen on the test subjects, never
    /// results ([`crate::results::leakage`]). Absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<LeakageDiagnostics>,
    /// Nested selection's choices and the pooled score of the chosen points ([`crate::results::selection`]); a
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
        folds_of_data: plan.folds_of_data,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, TaskDef, TaskKind};
    use crate::results::writer::write_results;
    use crate::spec::parse_spec;
    use crate::test_support::composite_summary;
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
