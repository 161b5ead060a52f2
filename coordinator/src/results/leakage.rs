//! The leakage premium: how much the field's usual test-set shortcuts would have added to an experiment's
//! scores. These are **diagnostics, never results**: every number here was chosen by looking at the test
//! subjects, which `mer` itself never does (fixed budgets, no epoch or point selection).
//!
//! - **Oracle epoch.** Per fold (test subject), the target epoch whose test predictions are most accurate
//!   (ties: the earliest such epoch, as the `if acc > best` loops of public codebases keep it), pooled over
//!   the folds and scored like the clean result. Premium = oracle epoch - clean (the fixed final epoch).
//!   A method without epochs (LBP-TOP + SVM) has one candidate, its final prediction: premium 0.
//! - **Oracle point.** Per method with at least two complete sweep points, the point with the best pooled
//!   test UF1 (ties: the lowest index). Its premium is measured against the mean clean score of the
//!   method's points, the expected score of a point chosen without looking at any test subject, and, with
//!   nested selection, against the selected score ([`crate::results::selection`]).
//!
//! The per-epoch predictions come from [`EpochLog::test_predictions`]; results written before they were
//! recorded have none, and a point with such a fold gets no oracle-epoch score (the folds are named).

use crate::plan::Plan;
use mer_shared::fold::{EpochLog, FoldResult};
use mer_shared::method::Method;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The label every rendering of these numbers carries.
pub const DIAGNOSTIC_LABEL: &str = "diagnostic: chosen on the test subjects, not a result";

/// The leakage diagnostics of one experiment (`results.json` field `diagnostics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageDiagnostics {
    /// Always [`DIAGNOSTIC_LABEL`].
    pub label: String,
    /// One entry per sweep point, in plan order.
    pub oracle_epoch: Vec<OracleEpoch>,
    /// One entry per method with at least two complete sweep points.
    pub oracle_point: Vec<OraclePoint>,
}

/// A sweep point's score had each fold stopped at its best test epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleEpoch {
    /// Sweep point index.
    pub index: u32,
    /// Sweep point label.
    pub label: String,
    /// Finished folds whose results carry no per-epoch test predictions (written before they were
    /// recorded); when any, `scores` is `None`.
    pub folds_without_epochs: Vec<String>,
    /// The chosen 0-based epoch per fold (`dataset/subject`); absent for methods without epochs.
    pub chosen_epochs: BTreeMap<String, usize>,
    /// Pooled scores of the chosen epochs' predictions.
    pub scores: Option<ScoreReport>,
    /// Oracle - clean UF1 (whole set).
    pub premium_uf1: Option<f64>,
    /// Oracle - clean UAR (whole set).
    pub premium_uar: Option<f64>,
}

/// The best sweep point of one method chosen on the pooled test score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OraclePoint {
    /// The method.
    pub method: Method,
    /// Complete sweep points of the method compared.
    pub points: usize,
    /// Index of the point with the best pooled test UF1.
    pub best_index: u32,
    /// Its label.
    pub best_label: String,
    /// Its pooled test UF1.
    pub best_uf1: f64,
    /// Its pooled test UAR.
    pub best_uar: f64,
    /// Mean clean UF1 over the method's complete points.
    pub mean_uf1: f64,
    /// Mean clean UAR over the method's complete points.
    pub mean_uar: f64,
    /// `best_uf1 - mean_uf1`.
    pub premium_uf1: f64,
    /// `best_uar - mean_uar`.
    pub premium_uar: f64,
    /// Nested selection's pooled UF1 of the method (complete runs with `[selection] mode = "nested"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_uf1: Option<f64>,
    /// Nested selection's pooled UAR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_uar: Option<f64>,
    /// `best_uf1 - selected_uf1`: what choosing the point on the test subjects adds over choosing it
    /// honestly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium_over_selected_uf1: Option<f64>,
    /// `best_uar - selected_uar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium_over_selected_uar: Option<f64>,
}

impl OraclePoint {
    /// Records the method's nested-selection score and the oracle point's premium over it.
    pub fn set_selected(&mut self, uf1: f64, uar: f64) {
        self.selected_uf1 = Some(uf1);
        self.selected_uar = Some(uar);
        self.premium_over_selected_uf1 = Some(self.best_uf1 - uf1);
        self.premium_over_selected_uar = Some(self.best_uar - uar);
    }
}

/// The UF1 premium of `oracle` over `clean` on one dataset part (`None` where either lacks the part).
pub fn part_premium_uf1(
    oracle: Option<&ScoreReport>,
    clean: Option<&ScoreReport>,
    part: &str,
) -> Option<f64> {
    let uf1 = |s: Option<&ScoreReport>| s.and_then(|s| s.parts.get(part)).map(|x| x.uf1);
    uf1(oracle).zip(uf1(clean)).map(|(o, c)| o - c)
}

/// What the diagnostics need of a sweep point's clean result (the aggregation's `SweepPointResult`
/// gives it; this module does not depend on the aggregation).
pub struct CleanPoint<'a> {
    /// Sweep point index.
    pub index: u32,
    /// Sweep point label.
    pub label: &'a str,
    /// The point's method.
    pub method: Method,
    /// True when not every fold finished.
    pub partial: bool,
    /// Folds the clean score did not pool.
    pub missing_folds: &'a [String],
    /// The clean pooled scores.
    pub scores: Option<&'a ScoreReport>,
}

/// What one fold offers the oracle: its predictions at the epoch with the best test accuracy.
enum FoldChoice {
    /// Chosen epoch (`None`: the method has no epochs) and the predictions at it.
    Chosen(Option<usize>, Vec<PredictionRecord>),
    /// The result has target epochs but no per-epoch test predictions.
    Missing,
}

/// The epoch of `res` whose test predictions are most accurate (earliest among ties).
fn choose_epoch(res: &FoldResult) -> FoldChoice {
    let target: Vec<&EpochLog> = res.epochs.iter().filter(|e| e.stage == "target").collect();
    let records: Vec<PredictionRecord> = res.predictions.iter().map(|p| p.record.clone()).collect();
    if target.is_empty() {
        return FoldChoice::Chosen(None, records);
    }
    let n = records.len();
    let mut best: Option<(usize, usize, &[usize])> = None;
    for e in &target {
        if e.test_predictions.len() != n || n == 0 {
            continue;
        }
        let correct = records
            .iter()
            .zip(&e.test_predictions)
            .filter(|(r, &p)| r.label == p)
            .count();
        if best.is_none_or(|(_, c, _)| correct > c) {
            best = Some((e.epoch, correct, &e.test_predictions));
        }
    }
    match best {
        None => FoldChoice::Missing,
        Some((epoch, _, preds)) => FoldChoice::Chosen(
            Some(epoch),
            records
                .into_iter()
                .zip(preds)
                .map(|(r, &pred)| PredictionRecord { pred, ..r })
                .collect(),
        ),
    }
}

/// The diagnostics of `plan`'s finished target results, given the clean per-point results `points`
/// (in plan order).
pub fn diagnose(
    plan: &Plan,
    results: &BTreeMap<String, FoldResult>,
    points: &[CleanPoint<'_>],
) -> LeakageDiagnostics {
    let mut oracle_epoch = Vec::new();
    for sp in points {
        let mut missing = Vec::new();
        let mut chosen = BTreeMap::new();
        let mut records = Vec::new();
        let mut seen = BTreeSet::new();
        for task in plan.targets_of(sp.index) {
            // Exactly the folds the clean score pooled (the aggregation's checks already ran).
            if sp.missing_folds.contains(&task.fold) || !seen.insert(task.fold.as_str()) {
                continue;
            }
            let Some(res) = results.get(&task.key) else {
                continue;
            };
            match choose_epoch(res) {
                FoldChoice::Chosen(epoch, recs) => {
                    if let Some(e) = epoch {
                        chosen.insert(task.fold.clone(), e);
                    }
                    records.extend(recs);
                }
                FoldChoice::Missing => missing.push(task.fold.clone()),
            }
        }
        let scores = (missing.is_empty() && !records.is_empty())
            .then(|| ScoreReport::compute(plan.scheme, &records).ok())
            .flatten();
        let premium =
            |f: fn(&ScoreReport) -> f64| scores.as_ref().zip(sp.scores).map(|(o, c)| f(o) - f(c));
        oracle_epoch.push(OracleEpoch {
            index: sp.index,
            label: sp.label.to_string(),
            folds_without_epochs: missing,
            chosen_epochs: chosen,
            premium_uf1: premium(|s| s.uf1),
            premium_uar: premium(|s| s.uar),
            scores,
        });
    }
    LeakageDiagnostics {
        label: DIAGNOSTIC_LABEL.into(),
        oracle_epoch,
        oracle_point: oracle_points(points),
    }
}

/// Per method with at least two complete points: the best point by pooled test UF1.
fn oracle_points(points: &[CleanPoint<'_>]) -> Vec<OraclePoint> {
    let mut by_method: BTreeMap<&str, Vec<(&CleanPoint<'_>, &ScoreReport)>> = BTreeMap::new();
    for sp in points.iter().filter(|p| !p.partial) {
        if let Some(s) = sp.scores {
            by_method.entry(sp.method.key()).or_default().push((sp, s));
        }
    }
    let mut out = Vec::new();
    for group in by_method.values().filter(|g| g.len() >= 2) {
        let mut best = group[0];
        for &(sp, s) in &group[1..] {
            if s.uf1 > best.1.uf1 {
                best = (sp, s);
            }
        }
        let k = group.len() as f64;
        let mean_uf1 = group.iter().map(|(_, s)| s.uf1).sum::<f64>() / k;
        let mean_uar = group.iter().map(|(_, s)| s.uar).sum::<f64>() / k;
        out.push(OraclePoint {
            method: best.0.method.clone(),
            points: group.len(),
            best_index: best.0.index,
            best_label: best.0.label.to_string(),
            best_uf1: best.1.uf1,
            best_uar: best.1.uar,
            mean_uf1,
            mean_uar,
            premium_uf1: best.1.uf1 - mean_uf1,
            premium_uar: best.1.uar - mean_uar,
            selected_uf1: None,
            selected_uar: None,
            premium_over_selected_uf1: None,
            premium_over_selected_uar: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, TaskKind};
    use crate::results::aggregate::aggregate;
    use crate::spec::parse_spec;
    use crate::test_support::composite_summary;
    use mer_shared::fold::{SamplePrediction, Timings};
    use mer_shared::metrics::Confusion;
    use mer_shared::prepared::SampleMeta;

    fn epoch(e: usize, preds: &[usize]) -> EpochLog {
        EpochLog {
            stage: "target".into(),
            epoch: e,
            loss: 1.0,
            monitor: None,
            unseen: None,
            samples_per_s: 0.0,
            test_predictions: preds.to_vec(),
            layers: Vec::new(),
        }
    }

    /// A fold result for `samples` with final predictions `finals` and the given epochs.
    fn result(
        fold: &str,
        samples: &[&SampleMeta],
        finals: &[usize],
        epochs: Vec<EpochLog>,
    ) -> FoldResult {
        let mut confusion = Confusion::new(3);
        let predictions = samples
            .iter()
            .zip(finals)
            .map(|(s, &p)| {
                let label = s.labels["megc3"];
                confusion.add(label, p).unwrap();
                SamplePrediction::new(s, label, p, vec![0.0; 3])
            })
            .collect();
        FoldResult {
            test_subject: fold.into(),
            scheme: "megc3".into(),
            seed: 0,
            device: "cpu".into(),
            predictions,
            confusion,
            epochs,
            timings: Timings::default(),
        }
    }

    #[test]
    fn the_oracle_epoch_is_the_earliest_most_accurate_one() {
        let ds = composite_summary("adaptive");
        let fold = ds.samples[0].fold_key();
        let samples: Vec<&SampleMeta> =
            ds.samples.iter().filter(|s| s.fold_key() == fold).collect();
        let labels: Vec<usize> = samples.iter().map(|s| s.labels["megc3"]).collect();
        let wrong = |i: usize| (labels[i] + 1) % 3;
        let n = labels.len();
        assert!(n >= 2, "the fixture fold needs two samples");
        // Epoch 0: only sample 0 right; epochs 1 and 2: all but sample 0 right (ties: epoch 1 wins when
        // n - 1 > 1); the final prediction (epoch 3 as logged) gets everything wrong.
        let e0: Vec<usize> = (0..n)
            .map(|i| if i == 0 { labels[i] } else { wrong(i) })
            .collect();
        let e1: Vec<usize> = (0..n)
            .map(|i| if i == 0 { wrong(i) } else { labels[i] })
            .collect();
        let all_wrong: Vec<usize> = (0..n).map(wrong).collect();
        let r = result(
            &fold,
            &samples,
            &all_wrong,
            vec![
                epoch(0, &e0),
                epoch(1, &e1),
                epoch(2, &e1),
                epoch(3, &all_wrong),
            ],
        );
        let FoldChoice::Chosen(Some(e), recs) = choose_epoch(&r) else {
            panic!("expected a chosen epoch");
        };
        assert_eq!(e, if n > 2 { 1 } else { 0 });
        let want = if n > 2 { &e1 } else { &e0 };
        assert_eq!(recs.iter().map(|r| r.pred).collect::<Vec<_>>(), *want);
        // Prior-stage epochs never count; results without per-epoch predictions are reported missing.
        let mut old = r.clone();
        for e in &mut old.epochs {
            e.test_predictions.clear();
        }
        assert!(matches!(choose_epoch(&old), FoldChoice::Missing));
        // A method without epochs has one candidate: its final predictions.
        let svm = result(&fold, &samples, &all_wrong, vec![]);
        let FoldChoice::Chosen(None, recs) = choose_epoch(&svm) else {
            panic!("expected the final predictions");
        };
        assert!(recs.iter().zip(&labels).all(|(r, &l)| r.pred != l));
    }

    #[test]
    fn premiums_are_oracle_minus_clean_and_the_oracle_point_is_the_best_of_its_method() {
        let spec = parse_spec(
            "s.toml",
            "name = \"leak\"\ndataset = \"d\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2, 4]\n",
        )
        .unwrap();
        let ds = composite_summary("adaptive");
        let plan = expand(&spec, &ds).unwrap();
        // Point p predicts every sample right except those with index % 3 == p in the fold (finals); every
        // fold's epoch 0 is perfect, so the oracle epoch scores 1.0 everywhere.
        let mut results = BTreeMap::new();
        for t in plan.tasks.iter().filter(|t| t.kind == TaskKind::Target) {
            let p = t.sweep_point.unwrap_or(0) as usize;
            let samples: Vec<&SampleMeta> = ds
                .samples
                .iter()
                .filter(|s| s.fold_key() == t.fold)
                .collect();
            let labels: Vec<usize> = samples.iter().map(|s| s.labels["megc3"]).collect();
            let finals: Vec<usize> = labels
                .iter()
                .enumerate()
                .map(|(i, &l)| if i % 3 == p { (l + 1) % 3 } else { l })
                .collect();
            let r = result(
                &t.fold,
                &samples,
                &finals,
                vec![epoch(0, &labels), epoch(1, &finals)],
            );
            results.insert(t.key.clone(), r);
        }
        let res = aggregate(&plan, &results);
        let d = res.diagnostics.as_ref().unwrap();
        assert_eq!(d.label, DIAGNOSTIC_LABEL);
        assert_eq!(d.oracle_epoch.len(), 3);
        for (sp, o) in res.sweep_points.iter().zip(&d.oracle_epoch) {
            let clean = sp.scores.as_ref().unwrap();
            let oracle = o.scores.as_ref().unwrap();
            assert_eq!((oracle.uf1, oracle.uar), (1.0, 1.0));
            assert!((o.premium_uf1.unwrap() - (1.0 - clean.uf1)).abs() < 1e-12);
            assert!((o.premium_uar.unwrap() - (1.0 - clean.uar)).abs() < 1e-12);
            assert!(o.chosen_epochs.values().all(|&e| e == 0));
            assert_eq!(o.chosen_epochs.len(), sp.folds_done);
        }
        let uf1: Vec<f64> = res
            .sweep_points
            .iter()
            .map(|s| s.scores.as_ref().unwrap().uf1)
            .collect();
        let best = (0..3).fold(0, |b, i| if uf1[i] > uf1[b] { i } else { b });
        assert_eq!(d.oracle_point.len(), 1);
        let op = &d.oracle_point[0];
        assert_eq!((op.points, op.best_index as usize), (3, best));
        let mean = uf1.iter().sum::<f64>() / 3.0;
        assert!((op.premium_uf1 - (uf1[best] - mean)).abs() < 1e-12 && op.premium_uf1 > 0.0);
        // The summary carries both, labelled as diagnostics.
        let md = crate::results::sections::summary_markdown(&res);
        assert!(
            md.contains("Leakage premium")
                && md.contains(DIAGNOSTIC_LABEL)
                && md.contains("Oracle point")
        );
        // A result without per-epoch predictions: that point gets no oracle-epoch score, and says why.
        let first = plan.targets_of(0).next().unwrap();
        let mut old = results.clone();
        for e in &mut old.get_mut(&first.key).unwrap().epochs {
            e.test_predictions.clear();
        }
        let res = aggregate(&plan, &old);
        let o = &res.diagnostics.as_ref().unwrap().oracle_epoch[0];
        assert_eq!(o.folds_without_epochs, vec![first.fold.clone()]);
        assert!(o.scores.is_none() && o.premium_uf1.is_none());
        assert!(crate::results::sections::summary_markdown(&res)
            .contains("no per-epoch test predictions"));
    }
}
