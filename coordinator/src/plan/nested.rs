//! The inner tasks of nested selection (`[selection] mode = "nested"`).
//!
//! For every outer LOSO fold, the fold's training subjects are dealt into `inner_folds` subject groups
//! ([`mer_shared::loso::inner_splits`]: seeded, stratified by part). Each candidate sweep point gets one
//! inner target task per group - trained on the other groups, tested on that group, the outer test subject
//! never seen - and, where its method has prior learning, an inner prior task on the same inner training
//! subjects. The inner results choose the outer fold's point (`crate::results::selection`); the outer test subject's
//! result of that point is the fold's prediction. Inner tasks are ordinary tasks of the graph: content-keyed
//! (the inner split is part of the key), so they are reused across experiments and scheduled like the rest.

use super::graph::TaskGraph;
use super::{Candidates, InnerSplit, SelectionPlan, SweepPoint, TaskDef};
use crate::error::CoordError;
use crate::spec::{ExperimentSpec, PathSeg};
use mer_shared::loso::{inner_splits, FoldId};
use mer_shared::method::Method;
use mer_shared::Dataset;
use std::collections::BTreeMap;

/// The selection plan and the inner tasks (prior tasks first) of a nested spec with `k` inner splits.
pub(super) fn inner_tasks(
    spec: &ExperimentSpec,
    parts: &[Dataset],
    sweep_points: &[SweepPoint],
    folds_of: &BTreeMap<&str, Vec<FoldId>>,
    k: usize,
) -> Result<(SelectionPlan, Vec<TaskDef>), CoordError> {
    let sel_path = [PathSeg::Key("selection"), PathSeg::Key("mode")];
    // One fold list for every point, so every candidate is scored on the same inner splits.
    let mut lists = folds_of.values();
    let folds = lists.next().cloned().unwrap_or_default();
    if lists.any(|l| *l != folds) {
        return Err(spec.error(
            &sel_path,
            "nested selection needs the same LOSO folds in every prepared file: these files hold different subjects",
        ));
    }
    let candidates = candidates(sweep_points);
    if candidates.is_empty() {
        return Err(spec.error(
            &sel_path,
            "nested selection has nothing to choose: no method has two or more sweep points (add a sweep axis, or leave [selection] out)",
        ));
    }
    let seed = spec.selection_seed();
    let mut splits = BTreeMap::new();
    for outer in &folds {
        let Some(groups) = inner_splits(&folds, outer, k, seed) else {
            return Err(spec.error(
                &[PathSeg::Key("selection"), PathSeg::Key("inner_folds")],
                format!(
                    "inner_folds = {k}, but outer fold {outer} has only {} training subjects",
                    folds.len() - 1
                ),
            ));
        };
        let groups: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(FoldId::to_string).collect())
            .collect();
        splits.insert(outer.to_string(), groups);
    }
    let mut graph = TaskGraph::default();
    for c in &candidates {
        for sp in sweep_points.iter().filter(|p| c.points.contains(&p.index)) {
            for outer in &folds {
                let outer = outer.to_string();
                for (i, group) in splits[&outer].iter().enumerate() {
                    let inner = InnerSplit {
                        index: i as u32,
                        of: k as u32,
                        test_subjects: group.clone(),
                    };
                    graph.add(spec, parts, sp, &outer, Some(&inner), None);
                }
            }
        }
    }
    Ok((
        SelectionPlan {
            inner_folds: k,
            seed,
            candidates,
            splits,
        },
        graph.into_tasks(),
    ))
}

/// Per method with two or more sweep points, its points in plan order.
fn candidates(sweep_points: &[SweepPoint]) -> Vec<Candidates> {
    let mut by_method: Vec<(Method, Vec<u32>)> = Vec::new();
    for sp in sweep_points {
        match by_method.iter_mut().find(|(m, _)| *m == sp.method) {
            Some((_, pts)) => pts.push(sp.index),
            None => by_method.push((sp.method.clone(), vec![sp.index])),
        }
    }
    by_method
        .into_iter()
        .filter(|(_, pts)| pts.len() >= 2)
        .map(|(method, points)| Candidates { method, points })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::plan::{expand, TaskKind};
    use crate::spec::parse_spec;
    use crate::test_support::composite_with_groups;
    use mer_shared::loso::Role;
    use std::collections::BTreeSet;

    const HEAD: &str = "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n";
    const SWEEP: &str = "[sweep]\nalpha = [1, 4]\nmethod = [\"mersiamc3d\", \"ststnet\"]\n";

    fn spec(extra: &str) -> crate::spec::ExperimentSpec {
        parse_spec("s.toml", &format!("{HEAD}{extra}")).unwrap()
    }

    #[test]
    fn a_nested_spec_has_exactly_the_inner_tasks_and_none_sees_its_held_out_subjects() {
        let data = composite_with_groups("adaptive");
        let nested = spec(&format!(
            "{SWEEP}[selection]\nmode = \"nested\"\ninner_folds = 3\n"
        ));
        let p = expand(&nested, &data).unwrap();
        let sel = p.selection.as_ref().unwrap();
        // MERSiamC3D has two points (alpha 1, 4) and is the only candidate: STSTNet's one point has
        // nothing to choose and gets no inner tasks.
        assert_eq!(sel.candidates.len(), 1);
        assert_eq!(sel.candidates[0].points, vec![0, 1]);
        assert_eq!((sel.inner_folds, sel.seed), (3, nested.train.seed));
        let count = |kind: TaskKind, inner: bool| {
            p.tasks
                .iter()
                .filter(|t| t.kind == kind && t.is_inner() == inner)
                .count()
        };
        // 68 outer folds: 68 priors (shared by both alphas), 3 x 68 outer targets; inner: 68 x 3 priors
        // (shared by both alphas), 68 x 3 splits x 2 points targets.
        assert_eq!(count(TaskKind::Prior, false), 68);
        assert_eq!(count(TaskKind::Target, false), 3 * 68);
        assert_eq!(count(TaskKind::Prior, true), 68 * 3);
        assert_eq!(count(TaskKind::Target, true), 68 * 3 * 2);
        assert_eq!(p.tasks.len(), 68 + 3 * 68 + 68 * 3 + 68 * 3 * 2);
        let first_target = p
            .tasks
            .iter()
            .position(|t| t.kind == TaskKind::Target)
            .unwrap();
        assert!(p.tasks[first_target..]
            .iter()
            .all(|t| t.kind == TaskKind::Target));
        let keys: BTreeSet<&str> = p.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys.len(), p.tasks.len(), "every task key is distinct");
        // The outer tasks are exactly the plain LOSO spec's: their results are reused.
        let plain = expand(&spec(SWEEP), &data).unwrap();
        let outer: Vec<&str> = p
            .tasks
            .iter()
            .filter(|t| !t.is_inner())
            .map(|t| t.key.as_str())
            .collect();
        let loso: Vec<&str> = plain.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(outer, loso);
        // Over every task payload: what it trains on never includes what it tests on, nor (inner tasks)
        // the outer fold's test subject; the inner test groups partition the outer training subjects.
        let labelled: BTreeSet<String> = data.samples.iter().map(|s| s.fold_key()).collect();
        for t in &p.tasks {
            let held = t.payload.held_out();
            let train: BTreeSet<&String> = labelled
                .iter()
                .filter(|s| held.role(s) == Role::Train)
                .collect();
            assert!(
                !train.contains(&t.fold),
                "task {} trains on its outer test subject",
                t.key
            );
            for s in &held.test {
                assert!(
                    !train.contains(s),
                    "task {} trains on its test subject {s}",
                    t.key
                );
            }
            match &t.payload.inner {
                None => assert_eq!(held.test, vec![t.fold.clone()]),
                Some(inner) => {
                    assert_eq!(inner.of, 3);
                    assert_eq!(held.excluded, vec![t.fold.clone()]);
                    assert_eq!(train.len() + inner.test_subjects.len(), 67);
                    assert_eq!(
                        sel.splits[&t.fold][inner.index as usize],
                        inner.test_subjects
                    );
                    if let Some(prior) = &t.payload.prior_key {
                        let pt = p.task(prior).unwrap();
                        assert_eq!(
                            pt.payload.held_out(),
                            held,
                            "the inner prior trains on the same subjects"
                        );
                    }
                }
            }
        }
        for (outer, groups) in &sel.splits {
            let mut all: Vec<&String> = groups.iter().flatten().collect();
            all.sort();
            let want: Vec<&String> = labelled.iter().filter(|s| *s != outer).collect();
            assert_eq!(
                all, want,
                "fold {outer}: the inner groups partition its training subjects"
            );
            let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
        assert!(
            p.describe().contains("nested selection: 3 inner splits"),
            "{}",
            p.describe()
        );
        // Another seed deals other groups, and so other task keys.
        let reseeded = expand(
            &spec(&format!(
                "{SWEEP}[selection]\nmode = \"nested\"\ninner_folds = 3\nseed = 99\n"
            )),
            &data,
        )
        .unwrap();
        assert_ne!(reseeded.selection.unwrap().splits, sel.splits);
    }

    #[test]
    fn nested_selection_errors_name_the_setting() {
        let e = parse_spec(
            "s.toml",
            &format!("{HEAD}{SWEEP}[selection]\nmode = \"nested\"\ninner_folds = 1\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("inner_folds") && e.contains("at least 2"), "{e}");
        let e = parse_spec("s.toml", &format!("{HEAD}[selection]\ninner_folds = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only to mode = \"nested\""), "{e}");
        let data = composite_with_groups("adaptive");
        let e = expand(&spec("[selection]\nmode = \"nested\"\n"), &data)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing to choose"), "{e}");
        let e = expand(
            &spec(&format!(
                "{SWEEP}[selection]\nmode = \"nested\"\ninner_folds = 80\n"
            )),
            &data,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("inner_folds = 80") && e.contains("67 training subjects"),
            "{e}"
        );
    }
}
