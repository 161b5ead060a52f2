//! Nested selection of sweep points: for every outer LOSO fold, the point each method would have chosen
//! without looking at that fold's test subject, and the pooled score of those choices.
//!
//! The rule, in one place ([`choose`]): among a method's candidate points, the one with the best **pooled
//! inner UF1** - the predictions of all `inner_folds` inner splits of the outer fold pooled (every training
//! subject of the outer fold predicted once) and scored as MEGC2019 scores a whole set. Ties: the higher
//! pooled inner UAR, then the lower point index (the earlier point of the spec). A fold is chosen only
//! when every inner task of every candidate has finished: a choice is never made on part of the evidence.
//!
//! The *selected* score pools, over the outer folds, the outer test predictions of each fold's chosen
//! point. No test subject influenced any choice, so unlike the oracle diagnostics of [`crate::results::leakage`]
//! this is a result: the honest answer to "which setting, and how well does it do".

use crate::plan::Plan;
use mer_shared::fold::FoldResult;
use mer_shared::loso::Role;
use mer_shared::method::Method;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nested selection's results (`results.json` field `selection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionResults {
    /// Inner splits per outer fold.
    pub inner_folds: usize,
    /// Seed of the inner splits.
    pub seed: u64,
    /// One entry per method with at least two sweep points.
    pub methods: Vec<MethodSelection>,
    /// Inner results that could not be used (wrong subjects, bad labels); empty when all is well.
    pub warnings: Vec<String>,
}

/// One method's nested selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSelection {
    /// The method.
    pub method: Method,
    /// Candidate sweep point indices, in plan order.
    pub points: Vec<u32>,
    /// Their labels.
    pub labels: Vec<String>,
    /// Per candidate (same order), how many outer folds chose it.
    pub times_chosen: Vec<usize>,
    /// Per outer fold, in plan order: inner scores and the choice.
    pub folds: Vec<FoldSelection>,
    /// Outer folds with a choice and the chosen point's outer result.
    pub folds_done: usize,
    /// Outer folds planned.
    pub folds_total: usize,
    /// True while `folds_done < folds_total`.
    pub partial: bool,
    /// Pooled scores of the chosen points' outer test predictions (`None` before any fold is done).
    pub scores: Option<ScoreReport>,
}

/// One outer fold's inner evidence and choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSelection {
    /// The outer fold (`dataset/subject`).
    pub fold: String,
    /// Per candidate point (plan order), its pooled inner scores.
    pub inner: Vec<InnerScore>,
    /// The chosen point's index (`None` until every inner task of the fold has finished).
    pub selected: Option<u32>,
    /// The chosen point's label.
    pub selected_label: Option<String>,
}

/// A candidate point's pooled inner score on one outer fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InnerScore {
    /// Sweep point index.
    pub point: u32,
    /// Inner splits finished.
    pub splits_done: usize,
    /// Inner splits planned.
    pub splits_total: usize,
    /// Pooled inner UF1 (`None` until every split finished).
    pub uf1: Option<f64>,
    /// Pooled inner UAR.
    pub uar: Option<f64>,
}

impl InnerScore {
    /// The score as a table cell: the pooled inner UF1, or how many inner splits have finished.
    pub fn cell(&self) -> String {
        match self.uf1 {
            Some(v) => format!("{v:.4}"),
            None => format!("{}/{} splits", self.splits_done, self.splits_total),
        }
    }

    fn complete(&self) -> Option<(f64, f64)> {
        match (self.splits_done == self.splits_total, self.uf1, self.uar) {
            (true, Some(f), Some(r)) => Some((f, r)),
            _ => None,
        }
    }
}

/// The selection rule: the candidate with the best pooled inner UF1, then UAR, then the lowest index;
/// `None` while any candidate's inner evidence is incomplete.
pub fn choose(inner: &[InnerScore]) -> Option<u32> {
    let mut best: Option<(f64, f64, u32)> = None;
    for s in inner {
        let (f, r) = s.complete()?;
        let better = match best {
            None => true,
            Some((bf, br, bi)) => f > bf || (f == bf && (r > br || (r == br && s.point < bi))),
        };
        if better {
            best = Some((f, r, s.point));
        }
    }
    best.map(|(_, _, i)| i)
}

/// Computes nested selection for `plan` from the finished results (keyed by task key); `None` when the
/// plan has no nested selection.
pub fn select(plan: &Plan, results: &BTreeMap<String, FoldResult>) -> Option<SelectionResults> {
    let sel = plan.selection.as_ref()?;
    let mut warnings = Vec::new();
    let mut methods = Vec::new();
    for c in &sel.candidates {
        let labels: Vec<String> = c.points.iter().map(|i| plan.point_label(*i)).collect();
        let mut folds = Vec::new();
        let mut times_chosen = vec![0; c.points.len()];
        let mut pooled: Vec<PredictionRecord> = Vec::new();
        let mut folds_done = 0;
        for outer in plan.folds.iter().map(ToString::to_string) {
            let outer = &outer;
            let inner: Vec<InnerScore> = c
                .points
                .iter()
                .map(|&p| inner_score(plan, results, p, outer, &mut warnings))
                .collect();
            let selected = choose(&inner);
            if let Some(p) = selected {
                if let Some(pos) = c.points.iter().position(|x| *x == p) {
                    times_chosen[pos] += 1;
                }
                let outer_result = plan
                    .targets_of(p)
                    .find(|t| &t.fold == outer)
                    .and_then(|t| results.get(&t.key));
                if let Some(r) = outer_result {
                    pooled.extend(r.predictions.iter().map(|x| x.record.clone()));
                    folds_done += 1;
                }
            }
            folds.push(FoldSelection {
                fold: outer.clone(),
                inner,
                selected,
                selected_label: selected
                    .and_then(|p| c.points.iter().position(|x| *x == p))
                    .map(|pos| labels[pos].clone()),
            });
        }
        let scores = if pooled.is_empty() {
            None
        } else {
            match ScoreReport::compute(plan.scheme, &pooled) {
                Ok(s) => Some(s),
                Err(e) => {
                    warnings.push(format!(
                        "{}: scoring the selected points failed: {e}",
                        c.method
                    ));
                    None
                }
            }
        };
        methods.push(MethodSelection {
            method: c.method.clone(),
            points: c.points.clone(),
            labels,
            times_chosen,
            folds_total: plan.folds.len(),
            partial: folds_done < plan.folds.len(),
            folds_done,
            folds,
            scores,
        });
    }
    Some(SelectionResults {
        inner_folds: sel.inner_folds,
        seed: sel.seed,
        methods,
        warnings,
    })
}

/// The pooled inner score of `point` on outer fold `outer`: the predictions of its finished inner
/// tasks, each checked to be of its split's test subjects.
fn inner_score(
    plan: &Plan,
    results: &BTreeMap<String, FoldResult>,
    point: u32,
    outer: &str,
    warnings: &mut Vec<String>,
) -> InnerScore {
    let mut records = Vec::new();
    let (mut done, mut total) = (0, 0);
    for t in plan.inner_targets_of(point).filter(|t| t.fold == outer) {
        total += 1;
        let Some(r) = results.get(&t.key) else {
            continue;
        };
        let held = t.payload.held_out();
        let foreign = r.predictions.iter().find(|p| {
            held.role(&format!("{}/{}", p.record.dataset, p.record.subject)) != Role::Test
        });
        if let Some(p) = foreign {
            warnings.push(format!(
                "inner task {} ({}): prediction {} is not of its test subjects; ignored",
                t.key.get(..12).unwrap_or(&t.key),
                held.describe(),
                p.id
            ));
            continue;
        }
        records.extend(r.predictions.iter().map(|p| p.record.clone()));
        done += 1;
    }
    let scores = if done == total && total > 0 {
        ScoreReport::compute(plan.scheme, &records).ok()
    } else {
        None
    };
    InnerScore {
        point,
        splits_done: done,
        splits_total: total,
        uf1: scores.as_ref().map(|s| s.uf1),
        uar: scores.as_ref().map(|s| s.uar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, TaskDef, TaskKind};
    use crate::results::aggregate::aggregate;
    use crate::spec::parse_spec;
    use crate::test_support::composite_with_groups;
    use mer_shared::fold::{SamplePrediction, Timings};
    use mer_shared::metrics::Confusion;
    use mer_shared::prepared::SampleMeta;

    /// A result of `task` on its test subjects, every prediction right or every one wrong.
    fn result(task: &TaskDef, samples: &[SampleMeta], right: bool) -> FoldResult {
        let held = task.payload.held_out();
        let mut confusion = Confusion::new(3);
        let predictions = samples
            .iter()
            .filter(|s| held.role(&s.fold_key()) == Role::Test)
            .map(|s| {
                let label = s.labels["megc3"];
                let pred = if right { label } else { (label + 1) % 3 };
                confusion.add(label, pred).unwrap();
                SamplePrediction::new(s, label, pred, vec![0.0; 3])
            })
            .collect();
        FoldResult {
            test_subject: task.fold.clone(),
            scheme: "megc3".into(),
            seed: 0,
            device: "cpu".into(),
            predictions,
            confusion,
            epochs: vec![],
            timings: Timings::default(),
        }
    }

    #[test]
    fn fixed_inner_scores_select_the_expected_point_and_the_selected_score_pools_its_outer_results()
    {
        let data = composite_with_groups("adaptive");
        let spec = parse_spec(
            "s.toml",
            "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 4]\n\
             [selection]\nmode = \"nested\"\ninner_folds = 2\n",
        )
        .unwrap();
        let plan = expand(&spec, &data).unwrap();
        // Inner evidence: point 0 (alpha 1) is right on the inner splits of CASME II's outer folds, point 1
        // (alpha 4) on every other outer fold's. Outer results: point 0 always right, point 1 always wrong.
        let casme = |t: &TaskDef| t.fold.starts_with("casme2/");
        let mut results = BTreeMap::new();
        for t in plan.tasks.iter().filter(|t| t.kind == TaskKind::Target) {
            let p0 = t.sweep_point == Some(0);
            let right = if t.is_inner() { p0 == casme(t) } else { p0 };
            results.insert(t.key.clone(), result(t, &data.samples, right));
        }
        let sel = select(&plan, &results).unwrap();
        let m = &sel.methods[0];
        assert!(sel.warnings.is_empty(), "{:?}", sel.warnings);
        assert_eq!(m.points, vec![0, 1]);
        for f in &m.folds {
            let want = if f.fold.starts_with("casme2/") { 0 } else { 1 };
            assert_eq!(f.selected, Some(want), "fold {}", f.fold);
            assert_eq!(f.inner[want as usize].uf1, Some(1.0));
        }
        let n_casme = plan
            .folds
            .iter()
            .filter(|f| f.to_string().starts_with("casme2/"))
            .count();
        assert_eq!(m.times_chosen, vec![n_casme, plan.folds.len() - n_casme]);
        assert_eq!((m.folds_done, m.partial), (68, false));
        // The selected score is the pooled score of exactly those outer results.
        let mut records = Vec::new();
        for outer in &plan.folds {
            let p = if outer.to_string().starts_with("casme2/") {
                0
            } else {
                1
            };
            let t = plan.targets_of(p).find(|t| &t.fold == outer).unwrap();
            records.extend(results[&t.key].predictions.iter().map(|x| x.record.clone()));
        }
        let want = ScoreReport::compute(plan.scheme, &records).unwrap();
        assert_eq!(m.scores.as_ref(), Some(&want));
        // The oracle point (point 0, all right) and its premium over the selected score.
        let agg = aggregate(&plan, &results);
        let o = &agg.diagnostics.as_ref().unwrap().oracle_point[0];
        assert_eq!((o.best_index, o.best_uf1), (0, 1.0));
        assert_eq!(o.premium_over_selected_uf1, Some(1.0 - want.uf1));
        assert_eq!(agg.selection.as_ref(), Some(&sel));
        // Scores pool only outer tasks: point 0's clean score is perfect.
        assert_eq!(
            agg.sweep_points[0].scores.as_ref().map(|s| s.uf1),
            Some(1.0)
        );
        assert_eq!(agg.tasks_total, 2 * 68);
        // One inner result missing: that fold is not chosen, the method is partial.
        let gone = plan.inner_targets_of(1).next().unwrap();
        results.remove(&gone.key);
        let sel = select(&plan, &results).unwrap();
        let f = sel.methods[0]
            .folds
            .iter()
            .find(|f| f.fold == gone.fold)
            .unwrap();
        assert_eq!(f.selected, None);
        assert_eq!(f.inner[1].splits_done, 1);
        assert!(sel.methods[0].partial);
        assert_eq!(sel.methods[0].folds_done, 67);
        let md = crate::results::sections::summary_markdown(&aggregate(&plan, &results));
        assert!(md.contains("## Nested selection (a result)"), "{md}");
        assert!(md.contains("premium over selected UF1 / UAR"), "{md}");
        assert!(
            md.contains(&format!("- {} -> not yet chosen", gone.fold)),
            "{md}"
        );
    }

    fn score(point: u32, uf1: f64, uar: f64) -> InnerScore {
        InnerScore {
            point,
            splits_done: 3,
            splits_total: 3,
            uf1: Some(uf1),
            uar: Some(uar),
        }
    }

    #[test]
    fn the_rule_takes_the_best_inner_uf1_then_uar_then_the_earlier_point() {
        assert_eq!(choose(&[score(0, 0.6, 0.5), score(1, 0.7, 0.4)]), Some(1));
        assert_eq!(choose(&[score(0, 0.7, 0.5), score(1, 0.7, 0.6)]), Some(1));
        assert_eq!(choose(&[score(3, 0.7, 0.6), score(2, 0.7, 0.6)]), Some(2));
        assert_eq!(choose(&[score(4, 0.7, 0.6), score(5, 0.7, 0.6)]), Some(4));
        let mut unfinished = score(1, 0.9, 0.9);
        unfinished.splits_done = 2;
        assert_eq!(choose(&[score(0, 0.6, 0.5), unfinished]), None);
        assert_eq!(choose(&[]), None);
    }
}
