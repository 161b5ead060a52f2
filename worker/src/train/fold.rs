//! A fold's split of a prepared set: which samples train and which test, by the task's [`HeldOut`]
//! subjects, with their class indices. The one rule every trainer splits by (the MERSiamC3D engine, the
//! baselines, the commands of user methods); it needs no tensors.

use crate::error::WorkerError;
use mer_shared::labels::LabelScheme;
use mer_shared::loso::{HeldOut, Role};
use mer_shared::prepared::Prepared;
use std::collections::BTreeSet;

/// The LOSO folds of a prepared set under a scheme, over every part it holds (the planner's enumeration,
/// [`mer_shared::loso::loso_folds`], so `mer train-fold --list-folds` lists them as an experiment would).
pub fn folds(data: &Prepared, scheme: LabelScheme) -> Vec<mer_shared::loso::FoldId> {
    mer_shared::loso::loso_folds_all_parts(&data.samples, scheme)
}

/// A fold's split: positions in the prepared data and labels (the baselines split folds the same way).
#[derive(Debug)]
pub struct Fold {
    /// Positions of the labelled samples outside the test subject.
    pub train: Vec<usize>,
    /// Their class indices.
    pub train_labels: Vec<usize>,
    /// Positions of the test subject's labelled samples.
    pub test: Vec<usize>,
    /// Their class indices.
    pub test_labels: Vec<usize>,
}

/// Splits the labelled samples into the fold's training subjects and its held-out subject; an unknown
/// subject or an empty training side is an error.
pub fn split_fold(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
) -> Result<Fold, WorkerError> {
    let mut f = Fold {
        train: vec![],
        train_labels: vec![],
        test: vec![],
        test_labels: vec![],
    };
    for (i, s) in data.samples.iter().enumerate() {
        let Some(&l) = s.labels.get(scheme.key()) else {
            continue;
        };
        let l = scheme
            .check(l as i64)
            .map_err(|e| WorkerError::sample(&s.id, e.to_string()))?;
        match held.role(&s.fold_key()) {
            Role::Test => {
                f.test.push(i);
                f.test_labels.push(l);
            }
            Role::Train => {
                f.train.push(i);
                f.train_labels.push(l);
            }
            Role::Excluded => {}
        }
    }
    let known: BTreeSet<String> = data.samples.iter().map(|s| s.fold_key()).collect();
    if let Some(missing) = held.test.iter().find(|t| !known.contains(*t)) {
        return Err(unknown_subject(data, scheme, missing));
    }
    if f.test.is_empty() {
        return Err(unknown_subject(data, scheme, &held.test.join(", ")));
    }
    if f.train.is_empty() {
        return Err(WorkerError::Training(format!(
            "fold {}: no labelled training sample outside the held-out subjects",
            held.describe()
        )));
    }
    Ok(f)
}

/// The error for a test subject without labelled samples, listing (the first few of) those that have some.
fn unknown_subject(data: &Prepared, scheme: LabelScheme, subject: &str) -> WorkerError {
    let all = folds(data, scheme);
    let mut available = all
        .iter()
        .take(8)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > 8 {
        available.push_str(&format!(", ... ({} in all)", all.len()));
    }
    WorkerError::UnknownTestSubject {
        subject: subject.into(),
        scheme: scheme.key().into(),
        available,
    }
}
