//! Leave-one-subject-out folds: the one enumeration the planner, the engine and `mer train-fold
//! --list-folds` share, so that they always agree on which folds exist and in which order.

use crate::labels::LabelScheme;
use crate::prepared::SampleMeta;
use crate::Dataset;
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
