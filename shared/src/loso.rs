//! Leave-one-subject-out folds: the one enumeration the planner, the engine and `mer train-fold
//! --list-folds` share, so that they always agree on which folds exist and in which order.

pub use crate::fold_id::FoldId;
use crate::labels::LabelScheme;
use crate::prepared::SampleMeta;
use crate::Dataset;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// LOSO folds of a dataset: every subject with at least one sample labelled under `scheme` within
/// `parts`, in [`FoldId`] order (dataset, then natural subject order: `sub2` before `sub10`).
pub fn loso_folds(samples: &[SampleMeta], scheme: LabelScheme, parts: &[Dataset]) -> Vec<FoldId> {
    ordered(
        samples
            .iter()
            .filter(|s| parts.contains(&s.dataset) && s.labels.contains_key(scheme.key()))
            .map(SampleMeta::fold_id),
    )
}

/// [`loso_folds`] over every part the samples come from.
pub fn loso_folds_all_parts(samples: &[SampleMeta], scheme: LabelScheme) -> Vec<FoldId> {
    let parts: Vec<Dataset> = samples
        .iter()
        .map(|s| s.dataset)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    loso_folds(samples, scheme, &parts)
}

/// The union of several fold lists, in the same order as [`loso_folds`].
pub fn union_folds<'a>(lists: impl IntoIterator<Item = &'a FoldId>) -> Vec<FoldId> {
    ordered(lists.into_iter().cloned())
}

/// Which subjects a task keeps out of its training set: those it tests on, and those it must not see at all.
/// A LOSO task tests on its fold's subject; an inner task of nested selection tests on a group of the outer
/// fold's training subjects and excludes the outer test subject entirely. This is the one rule that
/// splits a prepared set for a task: the engine, the baselines, the simulated trainer and the
/// coordinator's result checks all ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOut {
    /// The fold the task belongs to (`dataset/subject` of the outer test subject); its result carries it.
    pub fold: String,
    /// Subjects (`dataset/subject`) tested on and never trained on.
    pub test: Vec<String>,
    /// Subjects neither trained nor tested on (nested selection's outer test subject).
    pub excluded: Vec<String>,
}

/// What a sample is to a task, by its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In the training set.
    Train,
    /// In the test set.
    Test,
    /// In neither.
    Excluded,
}

impl HeldOut {
    /// Leave-one-subject-out: test on `subject`, train on everyone else.
    pub fn subject(subject: &str) -> Self {
        HeldOut {
            fold: subject.to_string(),
            test: vec![subject.to_string()],
            excluded: vec![],
        }
    }

    /// The role of a sample of subject `fold_key` (`dataset/subject`).
    pub fn role(&self, fold_key: &str) -> Role {
        if self.excluded.iter().any(|s| s == fold_key) {
            Role::Excluded
        } else if self.test.iter().any(|s| s == fold_key) {
            Role::Test
        } else {
            Role::Train
        }
    }

    /// True for a plain LOSO split (one test subject, the fold's, nothing excluded).
    pub fn is_loso(&self) -> bool {
        self.excluded.is_empty() && self.test.len() == 1 && self.test[0] == self.fold
    }

    /// A name for logs, errors and checkpoint fingerprints: the subject for LOSO (what it always was),
    /// `part (N subjects)` for a leave-one-dataset-out fold, `fold [test a, b]` for an inner split.
    pub fn describe(&self) -> String {
        if self.is_loso() {
            self.fold.clone()
        } else if self.excluded.is_empty() && !self.fold.contains('/') {
            format!("{} ({} subjects)", self.fold, self.test.len())
        } else {
            format!("{} [test {}]", self.fold, self.test.join(", "))
        }
    }
}

/// The subject-grouped inner splits of nested selection for outer fold `outer`: its training subjects
/// (every fold of `folds` but `outer`) dealt into `k` groups, each group one inner split's test subjects.
/// Seeded and stratified by part: within each dataset part the subjects are ordered by the sha256 of
/// (`seed`, `outer`, subject) - a seeded shuffle - and dealt round-robin, the count running on across parts,
/// so every group holds about 1/k of each part. Groups are returned in fold order inside; `None` when
/// there are fewer training subjects than groups.
pub fn inner_splits(
    folds: &[FoldId],
    outer: &FoldId,
    k: usize,
    seed: u64,
) -> Option<Vec<Vec<FoldId>>> {
    let train: Vec<&FoldId> = folds.iter().filter(|f| *f != outer).collect();
    if k == 0 || train.len() < k {
        return None;
    }
    let mut groups: Vec<Vec<FoldId>> = vec![Vec::new(); k];
    let mut dealt = 0;
    let mut parts: Vec<Dataset> = train.iter().map(|f| f.dataset()).collect();
    parts.dedup();
    let outer = outer.to_string();
    for part in parts {
        let mut members: Vec<(Vec<u8>, &FoldId)> = train
            .iter()
            .filter(|f| f.dataset() == part)
            .map(|f| {
                let mut h = Sha256::new();
                h.update(b"mer-inner-split");
                h.update(seed.to_le_bytes());
                h.update(outer.as_bytes());
                h.update([0]);
                h.update(f.to_string().as_bytes());
                (h.finalize().to_vec(), *f)
            })
            .collect();
        members.sort();
        for (_, f) in members {
            groups[dealt % k].push(f.clone());
            dealt += 1;
        }
    }
    for g in &mut groups {
        *g = union_folds(g.iter());
    }
    Some(groups)
}

/// The distinct folds, in [`FoldId`] order: the one ordering of folds.
fn ordered(folds: impl Iterator<Item = FoldId>) -> Vec<FoldId> {
    folds.collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_splits_partition_the_outer_training_subjects_by_part_and_seed() {
        let folds: Vec<FoldId> = (1..=6)
            .map(|i| FoldId::new(Dataset::Casme2, format!("sub{i:02}")))
            .chain((1..=3).map(|i| FoldId::new(Dataset::Samm, format!("{i:03}"))))
            .collect();
        let outer: FoldId = "casme2/sub03".parse().unwrap();
        let g = inner_splits(&folds, &outer, 2, 7).unwrap();
        assert_eq!(g.len(), 2);
        let mut all: Vec<FoldId> = g.iter().flatten().cloned().collect();
        all.sort();
        let mut want: Vec<FoldId> = folds
            .iter()
            .filter(|f| **f != "casme2/sub03")
            .cloned()
            .collect();
        want.sort();
        assert_eq!(
            all, want,
            "a partition of the training subjects, the outer one left out"
        );
        // Stratified: the 5 CASME II subjects split 3 / 2, the 3 SAMM ones continue the deal (2 / 1 the
        // other way round), so the groups hold 4 subjects each.
        let casme = |grp: &Vec<FoldId>| {
            grp.iter()
                .filter(|f| f.dataset() == Dataset::Casme2)
                .count()
        };
        assert_eq!((casme(&g[0]), casme(&g[1])), (3, 2));
        assert_eq!((g[0].len(), g[1].len()), (4, 4));
        assert_eq!(inner_splits(&folds, &outer, 2, 7), Some(g.clone()));
        let other_seeds: Vec<_> = (8..20)
            .filter_map(|s| inner_splits(&folds, &outer, 2, s))
            .collect();
        assert!(
            other_seeds.iter().any(|o| *o != g),
            "the seed moves subjects"
        );
        assert!(inner_splits(&folds, &outer, 9, 7).is_none());
        assert!(inner_splits(&folds, &outer, 0, 7).is_none());
    }

    #[test]
    fn held_out_roles() {
        let loso = HeldOut::subject("casme2/sub01");
        assert!(loso.is_loso());
        assert_eq!(loso.describe(), "casme2/sub01");
        assert_eq!(loso.role("casme2/sub01"), Role::Test);
        assert_eq!(loso.role("casme2/sub02"), Role::Train);
        let inner = HeldOut {
            fold: "casme2/sub01".into(),
            test: vec!["casme2/sub02".into(), "samm/006".into()],
            excluded: vec!["casme2/sub01".into()],
        };
        assert!(!inner.is_loso());
        assert_eq!(inner.role("casme2/sub01"), Role::Excluded);
        assert_eq!(inner.role("samm/006"), Role::Test);
        assert_eq!(inner.role("samm/007"), Role::Train);
        assert_eq!(
            inner.describe(),
            "casme2/sub01 [test casme2/sub02, samm/006]"
        );
    }

    #[test]
    fn subjects_sort_naturally() {
        let a = [
            "samm/011".to_string(),
            "casme2/sub10".into(),
            "casme2/sub2".into(),
        ];
        let b = ["casme2/sub2".to_string(), "smic/s3".into(), "nope/x".into()];
        let folds: Vec<FoldId> = a.iter().chain(&b).filter_map(|f| f.parse().ok()).collect();
        assert_eq!(
            union_folds(&folds),
            vec!["smic/s3", "casme2/sub2", "casme2/sub10", "samm/011"]
        );
    }
}
