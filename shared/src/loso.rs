//! Leave-one-subject-out folds: the one enumeration the planner, the engine and `mer train-fold
//! --list-folds` share, so that they always agree on which folds exist and in which order.

use crate::labels::LabelScheme;
use crate::prepared::SampleMeta;
use crate::Dataset;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// LOSO folds of a dataset: `dataset/subject` of every subject with at least one sample labelled under
/// `scheme` within `parts`, in dataset order, then natural subject order (`sub2` before `sub10`).
pub fn loso_folds(samples: &[SampleMeta], scheme: LabelScheme, parts: &[Dataset]) -> Vec<String> {
    ordered(
        samples
            .iter()
            .filter(|s| parts.contains(&s.dataset) && s.labels.contains_key(scheme.key()))
            .map(|s| (s.dataset, s.subject.clone())),
    )
}

/// [`loso_folds`] over every part the samples come from.
pub fn loso_folds_all_parts(samples: &[SampleMeta], scheme: LabelScheme) -> Vec<String> {
    let parts: Vec<Dataset> = samples
        .iter()
        .map(|s| s.dataset)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    loso_folds(samples, scheme, &parts)
}

/// The union of several fold lists (`dataset/subject` keys, as [`loso_folds`] makes them), in the same
/// order as [`loso_folds`]; keys that do not start with a known dataset are dropped.
pub fn union_folds<'a>(lists: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    ordered(lists.into_iter().filter_map(|f| {
        let (d, s) = f.split_once('/')?;
        Some((d.parse::<Dataset>().ok()?, s.to_string()))
    }))
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
    /// `fold [test a, b]` for an inner split.
    pub fn describe(&self) -> String {
        if self.is_loso() {
            self.fold.clone()
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
    folds: &[String],
    outer: &str,
    k: usize,
    seed: u64,
) -> Option<Vec<Vec<String>>> {
    let train: Vec<&String> = folds.iter().filter(|f| f.as_str() != outer).collect();
    if k == 0 || train.len() < k {
        return None;
    }
    let mut groups: Vec<Vec<String>> = vec![Vec::new(); k];
    let mut dealt = 0;
    let part_of = |f: &str| {
        f.split_once('/')
            .map_or(f.to_string(), |(d, _)| d.to_string())
    };
    let mut parts: Vec<String> = train.iter().map(|f| part_of(f)).collect();
    parts.dedup();
    for part in parts {
        let mut members: Vec<(Vec<u8>, &String)> = train
            .iter()
            .filter(|f| part_of(f) == part)
            .map(|f| {
                let mut h = Sha256::new();
                h.update(b"mer-inner-split");
                h.update(seed.to_le_bytes());
                h.update(outer.as_bytes());
                h.update([0]);
                h.update(f.as_bytes());
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

/// Fold keys `dataset/subject` of the distinct pairs, in dataset then natural subject order: the one
/// ordering of folds.
fn ordered(pairs: impl Iterator<Item = (Dataset, String)>) -> Vec<String> {
    let set: BTreeSet<(Dataset, SubjectOrd)> = pairs.map(|(d, s)| (d, SubjectOrd(s))).collect();
    set.into_iter()
        .map(|(d, s)| format!("{d}/{}", s.0))
        .collect()
}

/// Orders subject names naturally (`sub2` before `sub10`, `6` before `11`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubjectOrd(String);

impl SubjectOrd {
    fn split(&self) -> (&str, Option<u64>) {
        let digits = self.0.trim_start_matches(|c: char| !c.is_ascii_digit());
        let prefix = &self.0[..self.0.len() - digits.len()];
        (prefix, digits.parse().ok())
    }
}

impl Ord for SubjectOrd {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.split().cmp(&o.split()).then_with(|| self.0.cmp(&o.0))
    }
}

impl PartialOrd for SubjectOrd {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_splits_partition_the_outer_training_subjects_by_part_and_seed() {
        let folds: Vec<String> = (1..=6)
            .map(|i| format!("casme2/sub{i:02}"))
            .chain((1..=3).map(|i| format!("samm/{i:03}")))
            .collect();
        let g = inner_splits(&folds, "casme2/sub03", 2, 7).unwrap();
        assert_eq!(g.len(), 2);
        let mut all: Vec<String> = g.iter().flatten().cloned().collect();
        all.sort();
        let mut want: Vec<String> = folds
            .iter()
            .filter(|f| *f != "casme2/sub03")
            .cloned()
            .collect();
        want.sort();
        assert_eq!(
            all, want,
            "a partition of the training subjects, the outer one left out"
        );
        // Stratified: the 5 CASME II subjects split 3 / 2, the 3 SAMM ones continue the deal (2 / 1 the
        // other way round), so the groups hold 4 subjects each.
        let casme = |grp: &Vec<String>| grp.iter().filter(|f| f.starts_with("casme2/")).count();
        assert_eq!((casme(&g[0]), casme(&g[1])), (3, 2));
        assert_eq!((g[0].len(), g[1].len()), (4, 4));
        assert_eq!(inner_splits(&folds, "casme2/sub03", 2, 7), Some(g.clone()));
        let other_seeds: Vec<_> = (8..20)
            .filter_map(|s| inner_splits(&folds, "casme2/sub03", 2, s))
            .collect();
        assert!(
            other_seeds.iter().any(|o| *o != g),
            "the seed moves subjects"
        );
        assert!(inner_splits(&folds, "casme2/sub03", 9, 7).is_none());
        assert!(inner_splits(&folds, "casme2/sub03", 0, 7).is_none());
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
        let mut v = [
            SubjectOrd("sub10".into()),
            SubjectOrd("sub02".into()),
            SubjectOrd("11".into()),
            SubjectOrd("6".into()),
        ];
        v.sort();
        let names: Vec<&str> = v.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, vec!["6", "11", "sub02", "sub10"]);
        let a = [
            "samm/011".to_string(),
            "casme2/sub10".into(),
            "casme2/sub2".into(),
        ];
        let b = ["casme2/sub2".to_string(), "smic/s3".into(), "nope/x".into()];
        assert_eq!(
            union_folds(a.iter().chain(&b)),
            vec!["smic/s3", "casme2/sub2", "casme2/sub10", "samm/011"]
        );
    }
}
