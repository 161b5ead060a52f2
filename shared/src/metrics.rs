//! Pooled scoring exactly as MEGC2019 defines it.
//!
//! Predictions of all folds are first summed into one confusion matrix per sweep point (and per dataset
//! part, from the same pooled predictions); only then are the scores computed:
//! - UF1 = mean over ALL classes of the scheme of 2TP / (2TP + FP + FN);
//! - UAR = mean over ALL classes of TP / N_c;
//! - Acc = sum TP / N; macro-F1 = mean over classes of the per-class F1 (identical to UF1: both are the
//!   unweighted mean of per-class F1 on pooled counts; it is reported under both names because the paper's
//!   5-class tables say "F1").
//!
//! A class with no samples (N_c = 0) still counts in the mean: its recall is 0, and its F1 is 0 (0/0 is
//! taken as 0, scikit-learn's `zero_division=0`). This is the official rule "all classes of the scheme
//! count" and it is what `sklearn.metrics.f1_score/recall_score(average="macro", labels=[0..k))` return.
//! Per-fold or per-subject averages are never computed: they are the field's known mistake.

use crate::error::SharedError;
use serde::{Deserialize, Serialize};

/// A k x k confusion matrix, `counts[true][pred]`, that can be merged across folds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        Confusion {
            counts: vec![vec![0; classes]; classes],
        }
    }

    /// Builds a matrix from its rows (`rows[true][pred]`); rows must be square.
    pub fn from_rows(rows: Vec<Vec<u64>>) -> Result<Self, SharedError> {
        let k = rows.len();
        if let Some(r) = rows.iter().find(|r| r.len() != k) {
            return Err(SharedError::ClassMismatch { a: k, b: r.len() });
        }
        Ok(Confusion { counts: rows })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Counts one prediction. Panics never: labels outside the matrix are an error.
    pub fn add(&mut self, truth: usize, pred: usize) -> Result<(), SharedError> {
        let k = self.classes();
        if truth >= k || pred >= k {
            return Err(SharedError::LabelOutOfRange {
                label: truth.max(pred) as i64,
                scheme: format!("{k}-class"),
                classes: k,
            });
        }
        self.counts[truth][pred] += 1;
        Ok(())
    }

    /// Adds another matrix (another fold) into this one.
    pub fn merge(&mut self, other: &Confusion) -> Result<(), SharedError> {
        if other.classes() != self.classes() {
            return Err(SharedError::ClassMismatch {
                a: self.classes(),
                b: other.classes(),
            });
        }
        for (row, orow) in self.counts.iter_mut().zip(&other.counts) {
            for (c, o) in row.iter_mut().zip(orow) {
                *c += o;
            }
        }
        Ok(())
    }

    /// The rows, `[true][pred]`.
    pub fn rows(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// True positives of class `c`.
    pub fn tp(&self, c: usize) -> u64 {
        self.counts[c][c]
    }

    /// False positives of class `c` (predicted c, truly another class).
    pub fn fp(&self, c: usize) -> u64 {
        (0..self.classes())
            .filter(|&t| t != c)
            .map(|t| self.counts[t][c])
            .sum()
    }

    /// False negatives of class `c` (truly c, predicted another class).
    pub fn fn_(&self, c: usize) -> u64 {
        (0..self.classes())
            .filter(|&p| p != c)
            .map(|p| self.counts[c][p])
            .sum()
    }

    /// Number of samples whose true class is `c`.
    pub fn support(&self, c: usize) -> u64 {
        self.counts[c].iter().sum()
    }

    /// Computes all scores of this (pooled) matrix.
    pub fn scores(&self) -> Scores {
        let k = self.classes();
        let n = self.total();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class: Vec<ClassScores> = (0..k)
            .map(|c| {
                let (tp, fp, fn_) = (self.tp(c), self.fp(c), self.fn_(c));
                ClassScores {
                    tp,
                    fp,
                    fn_,
                    support: self.support(c),
                    precision: ratio(tp, tp + fp),
                    recall: ratio(tp, tp + fn_),
                    f1: ratio(2 * tp, 2 * tp + fp + fn_),
                }
            })
            .collect();
        let mean = |f: &dyn Fn(&ClassScores) -> f64| {
            if k == 0 {
                0.0
            } else {
                per_class.iter().map(f).sum::<f64>() / k as f64
            }
        };
        let correct: u64 = (0..k).map(|c| self.tp(c)).sum();
        let uf1 = mean(&|c| c.f1);
        Scores {
            n,
            acc: ratio(correct, n),
            uf1,
            uar: mean(&|c| c.recall),
            f1_macro: uf1,
            per_class,
        }
    }
}

/// Scores of one class on pooled counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Samples of this class.
    pub support: u64,
    /// TP / (TP + FP), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// TP / N_c, 0 when the class has no sample.
    pub recall: f64,
    /// 2TP / (2TP + FP + FN), 0 when that is 0/0.
    pub f1: f64,
}

/// Scores of a pooled confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Number of samples.
    pub n: u64,
    /// Accuracy.
    pub acc: f64,
    /// Unweighted F1: mean of per-class F1 over all classes of the scheme.
    pub uf1: f64,
    /// Unweighted average recall: mean of per-class recall over all classes of the scheme.
    pub uar: f64,
    /// Macro-F1 (same definition as UF1 on pooled counts).
    pub f1_macro: f64,
    /// Per-class detail, indexed by class.
    pub per_class: Vec<ClassScores>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_predictor_on_the_composite_counts() {
        // 250 negative, 109 positive, 83 surprise, all predicted negative.
        let m =
            Confusion::from_rows(vec![vec![250, 0, 0], vec![109, 0, 0], vec![83, 0, 0]]).unwrap();
        let s = m.scores();
        assert_eq!(s.n, 442);
        assert!((s.acc - 250.0 / 442.0).abs() < 1e-12);
        assert!((s.acc - 0.5656).abs() < 5e-5);
        assert!((s.uar - 1.0 / 3.0).abs() < 1e-12);
        // F1 of negative = 500 / (500 + 192) ; others 0.
        assert!((s.uf1 - (500.0 / 692.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn pooled_is_not_the_mean_of_folds() {
        let mut a = Confusion::new(2);
        a.add(0, 0).unwrap();
        let mut b = Confusion::new(2);
        for _ in 0..3 {
            b.add(1, 0).unwrap();
        }
        b.add(1, 1).unwrap();
        let mut pooled = a.clone();
        pooled.merge(&b).unwrap();
        let per_fold_mean = (a.scores().uar + b.scores().uar) / 2.0;
        let s = pooled.scores();
        assert!((s.uar - (1.0 + 0.25) / 2.0).abs() < 1e-12);
        assert!((per_fold_mean - s.uar).abs() > 1e-3);
    }

    #[test]
    fn absent_class_counts_as_zero() {
        let mut m = Confusion::new(3);
        m.add(0, 0).unwrap();
        m.add(1, 1).unwrap();
        let s = m.scores();
        assert!((s.uf1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.uar - 2.0 / 3.0).abs() < 1e-12);
        assert!(m.add(3, 0).is_err());
        assert!(m.merge(&Confusion::new(2)).is_err());
    }
}
