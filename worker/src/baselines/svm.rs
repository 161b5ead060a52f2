//! The LBP-TOP baseline's classifier: a multi-class linear SVM (one-vs-rest over linfa-svm's binary
//! C-SVC), plus an optional per-feature standardiser fitted on the training rows only.
//!
//! One binary SVM per class `k` separates "class k" from "every other training sample" with the same C
//! for both sides (linfa-svm's `pos_neg_weights(c, c)`, linear kernel, SMO to libsvm's tolerance 1e-3,
//! no shrinking: no randomness anywhere, so the same input gives the same model). A sample is given the
//! class with the largest decision value. The decision value of class `k` is the signed distance
//! score `w_k . x - rho_k` that linfa's own `Predict` thresholds at 0: it is obtained from the fitted
//! `Svm` through its public `weighted_sum(x)` (for the linear kernel the precombined `w_k . x`) minus
//! its public `rho`, because linfa-svm's `Predict` only returns the boolean (or a Platt probability).
//!
//! Classes without a training sample get no SVM and the decision value `-inf`, so they are never
//! predicted; with a single class present there is nothing to separate, that class gets the decision
//! value 0 and is always predicted.
//!
//! Cost: linfa builds each class's full `n x n` kernel with one dot product per pair, so a composite
//! LOSO fold (about 435 rows of 4425 features, 3 classes) takes about 4 s on 2 cores when trained on the
//! raw features. A linear SVM depends on its training rows only through their dot products, so the
//! LBP-TOP method trains on [`GramBasis`] coordinates instead (as many values per row as there are
//! training rows, the same dot products, the same SVM): about 0.1 s per fold.

use linfa::dataset::Dataset;
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::{Array1, Array2, ArrayView1};
use rayon::prelude::*;

use crate::error::WorkerError;

/// SMO stopping tolerance (the maximal violating pair's gradient gap): libsvm's and scikit-learn's
/// `SVC` default, 1e-3 (what the published baselines' SVMs stopped at), instead of linfa-svm's 1e-7.
const SMO_TOLERANCE: f64 = 1e-3;

/// What decides one class.
#[derive(Debug, Clone)]
enum ClassModel {
    /// No training sample: never predicted (decision `-inf`).
    Absent,
    /// The only class in the training data: always predicted (decision 0).
    Sole,
    /// A binary linear SVM, class vs rest.
    Svm(Box<Svm<f64, bool>>),
}

/// A multi-class linear SVM (one-vs-rest), trained by [`LinearSvm::fit`], queried by [`LinearSvm::decide`].
#[derive(Debug, Clone)]
pub struct LinearSvm {
    dim: usize,
    models: Vec<ClassModel>,
}

fn training_error(message: String) -> WorkerError {
    WorkerError::Training(message)
}

/// Checks that `x` is a non-empty matrix of finite values with rows of equal length; returns that length.
fn check_rows(x: &[Vec<f32>], what: &str) -> Result<usize, WorkerError> {
    let dim = x
        .first()
        .map(Vec::len)
        .ok_or_else(|| training_error(format!("{what}: no training samples")))?;
    if dim == 0 {
        return Err(training_error(format!("{what}: samples have no features")));
    }
    for (i, row) in x.iter().enumerate() {
        if row.len() != dim {
            return Err(training_error(format!(
                "{what}: sample {i} has {} features, sample 0 has {dim}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(training_error(format!(
                "{what}: sample {i} feature {j} is {} (not finite)",
                row[j]
            )));
        }
    }
    Ok(dim)
}

impl LinearSvm {
    /// Trains on `x` (rows = samples) with labels `y` in 0..classes. Deterministic for the same input.
    ///
    /// Errors (`Training`): no samples, rows of different lengths or with non-finite values, `y` of
    /// another length than `x`, a label `>= classes`, `classes == 0`, a `c` that is not positive and
    /// finite, or a failure of linfa-svm.
    pub fn fit(x: &[Vec<f32>], y: &[usize], classes: usize, c: f64) -> Result<Self, WorkerError> {
        let dim = check_rows(x, "linear SVM")?;
        if y.len() != x.len() {
            return Err(training_error(format!(
                "linear SVM: {} labels for {} samples",
                y.len(),
                x.len()
            )));
        }
        if classes == 0 {
            return Err(training_error("linear SVM: 0 classes".into()));
        }
        if let Some((i, &label)) = y.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(training_error(format!(
                "linear SVM: sample {i} has label {label}, outside 0..{classes}"
            )));
        }
        if !(c.is_finite() && c > 0.0) {
            return Err(training_error(format!(
                "linear SVM: C = {c} must be positive and finite"
            )));
        }
        let mut counts = vec![0usize; classes];
        for &label in y {
            counts[label] += 1;
        }
        let present = counts.iter().filter(|&&n| n > 0).count();

        let records = Array2::from_shape_fn((x.len(), dim), |(i, j)| f64::from(x[i][j]));
        let models = (0..classes)
            .into_par_iter()
            .map(|k| {
                if counts[k] == 0 {
                    return Ok(ClassModel::Absent);
                }
                if present == 1 {
                    return Ok(ClassModel::Sole);
                }
                let targets: Array1<bool> = y.iter().map(|&l| l == k).collect();
                let data = Dataset::new(records.clone(), targets);
                let model = Svm::<f64, bool>::params()
                    .linear_kernel()
                    .pos_neg_weights(c, c)
                    .eps(SMO_TOLERANCE)
                    .fit(&data)
                    .map_err(|e| training_error(format!("linear SVM: class {k} vs rest: {e}")))?;
                Ok(ClassModel::Svm(Box::new(model)))
            })
            .collect::<Result<Vec<_>, WorkerError>>()?;
        Ok(LinearSvm { dim, models })
    }

    /// The number of features a sample must have (the training rows' length).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Per-class decision values of one sample, and the predicted class.
    ///
    /// `x` should have [`LinearSvm::dim`] values; extra values are ignored and missing ones count as 0.
    /// Classes without training samples have the value `-inf` and are never predicted; ties go to the
    /// smaller class index, and NaN values (from a non-finite `x`) never win.
    pub fn decide(&self, x: &[f32]) -> (usize, Vec<f64>) {
        let mut sample = Array1::<f64>::zeros(self.dim);
        for (d, &v) in sample.iter_mut().zip(x) {
            *d = f64::from(v);
        }
        let view: ArrayView1<f64> = sample.view();
        let values: Vec<f64> = self
            .models
            .iter()
            .map(|m| match m {
                ClassModel::Absent => f64::NEG_INFINITY,
                ClassModel::Sole => 0.0,
                ClassModel::Svm(svm) => svm.weighted_sum(&view) - svm.rho,
            })
            .collect();
        // The first present class is the fallback if every value is NaN.
        let mut best = self
            .models
            .iter()
            .position(|m| !matches!(m, ClassModel::Absent))
            .unwrap_or(0);
        for (k, &v) in values.iter().enumerate() {
            if v > values[best] || (values[best].is_nan() && !v.is_nan() && v > f64::NEG_INFINITY) {
                best = k;
            }
        }
        (best, values)
    }
}

/// Coordinates with the dot products of a fold's training rows: from their Gram matrix `K` (n x n,
/// `K_ij = x_i . x_j`), the lower-triangular `L` of a Cholesky factorisation `K = L L^T`. Row `i` of `L`
/// stands for training row `i` (`L_i . L_j = K_ij`), and a test row with dot products `k` against the
/// training rows stands as the solution `z` of `L z = k` (its dot products with every `L_i` are `k`).
/// A linear SVM trained and queried in these coordinates is the SVM of the original features, with
/// `n` values per row instead of thousands. Where `K` is only semi-definite (repeated rows), a pivot at
/// or below `1e-12 * max diagonal` is set to zero with its column, which drops a direction along which
/// no training row varies.
#[derive(Debug, Clone, PartialEq)]
pub struct GramBasis {
    /// `L`, row-major, lower triangle (upper triangle zero).
    l: Vec<f64>,
    n: usize,
}

impl GramBasis {
    /// Factorises the training rows' Gram matrix (`gram` is `n * n`, row-major, symmetric).
    pub fn new(gram: &[f64], n: usize) -> Result<Self, WorkerError> {
        if gram.len() != n * n || n == 0 {
            return Err(training_error(format!(
                "Gram matrix has {} values, {n} x {n} expected",
                gram.len()
            )));
        }
        let tiny = 1e-12 * (0..n).map(|i| gram[i * n + i]).fold(0.0, f64::max);
        let mut l = vec![0.0; n * n];
        for j in 0..n {
            let mut d = gram[j * n + j];
            for k in 0..j {
                d -= l[j * n + k] * l[j * n + k];
            }
            if d <= tiny {
                continue;
            }
            let djj = d.sqrt();
            l[j * n + j] = djj;
            for i in j + 1..n {
                let mut v = gram[i * n + j];
                for k in 0..j {
                    v -= l[i * n + k] * l[j * n + k];
                }
                l[i * n + j] = v / djj;
            }
        }
        Ok(GramBasis { l, n })
    }

    /// The training rows' coordinates (row `i` of `L`).
    pub fn train_rows(&self) -> Vec<Vec<f32>> {
        (0..self.n)
            .map(|i| {
                self.l[i * self.n..(i + 1) * self.n]
                    .iter()
                    .map(|v| *v as f32)
                    .collect()
            })
            .collect()
    }

    /// The coordinates of a row whose dot products with the training rows are `k` (forward
    /// substitution; a dropped direction gets 0).
    pub fn project(&self, k: &[f64]) -> Vec<f32> {
        let n = self.n;
        let mut z = vec![0.0f64; n];
        for j in 0..n {
            let djj = self.l[j * n + j];
            if djj == 0.0 {
                continue;
            }
            let mut v = k.get(j).copied().unwrap_or(0.0);
            for (a, b) in self.l[j * n..j * n + j].iter().zip(&z) {
                v -= a * b;
            }
            z[j] = v / djj;
        }
        z.into_iter().map(|v| v as f32).collect()
    }
}

/// Per-feature standardisation (zero mean, unit variance) with statistics from the training rows only,
/// applied to training and test rows alike. A feature that is constant on the training rows is only
/// centred (its scale stays 1), so it contributes nothing instead of dividing by zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardiser {
    /// Mean and (population) standard deviation of every feature over the rows of `x`.
    ///
    /// Errors (`Training`): no rows, rows of different lengths or with non-finite values.
    pub fn fit(x: &[Vec<f32>]) -> Result<Self, WorkerError> {
        let dim = check_rows(x, "standardiser")?;
        let n = x.len() as f64;
        let mut mean = vec![0.0f64; dim];
        for row in x {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; dim];
        for row in x {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let scale = var
            .into_iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                if sd > 1e-12 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Standardiser { mean, scale })
    }

    /// Standardises one row in place (values beyond the fitted length are left as they are).
    pub fn apply(&self, row: &mut [f32]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
            *v = ((f64::from(*v) - m) / s) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Three well-separated Gaussian-ish blobs in 4-D (the last two dimensions are noise).
    fn blobs(n_per_class: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let centres = [[0.0f32, 0.0], [6.0, 0.0], [0.0, 6.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (k, c) in centres.iter().enumerate() {
            for _ in 0..n_per_class {
                x.push(vec![
                    c[0] + rng.random_range(-1.0..1.0),
                    c[1] + rng.random_range(-1.0..1.0),
                    rng.random_range(-0.5..0.5),
                    rng.random_range(-0.5..0.5),
                ]);
                y.push(k);
            }
        }
        (x, y)
    }

    #[test]
    fn separates_three_linearly_separable_classes() {
        let (x, y) = blobs(20, 1);
        let svm = LinearSvm::fit(&x, &y, 3, 1.0).unwrap();
        assert_eq!(svm.dim(), 4);
        for (row, &label) in x.iter().zip(&y) {
            assert_eq!(svm.decide(row).0, label, "training point {row:?}");
        }
        let (xt, yt) = blobs(30, 2);
        for (row, &label) in xt.iter().zip(&yt) {
            let (pred, values) = svm.decide(row);
            assert_eq!(pred, label, "held-out point {row:?}: {values:?}");
            assert_eq!(values.len(), 3);
        }
    }

    #[test]
    fn decision_values_match_linfas_own_prediction() {
        use linfa::traits::Predict;
        let (x, y) = blobs(10, 4);
        let svm = LinearSvm::fit(&x, &y, 3, 1.0).unwrap();
        let (xt, _) = blobs(10, 5);
        for row in &xt {
            let (_, values) = svm.decide(row);
            let sample = Array1::from_iter(row.iter().map(|&v| f64::from(v)));
            for (k, m) in svm.models.iter().enumerate() {
                let ClassModel::Svm(model) = m else {
                    panic!("class {k} has no SVM")
                };
                let positive: bool = model.predict(sample.view());
                assert_eq!(positive, values[k] >= 0.0, "class {k}: {}", values[k]);
            }
        }
    }

    #[test]
    fn deterministic() {
        let (x, y) = blobs(15, 7);
        let a = LinearSvm::fit(&x, &y, 3, 0.5).unwrap();
        let b = LinearSvm::fit(&x, &y, 3, 0.5).unwrap();
        let (xt, _) = blobs(5, 8);
        for row in &xt {
            assert_eq!(a.decide(row), b.decide(row));
        }
    }

    #[test]
    fn class_without_samples_is_never_predicted() {
        let (x, y) = blobs(10, 9);
        // Drop class 1 and declare 4 classes (3 is absent too).
        let (x, y): (Vec<_>, Vec<_>) = x.into_iter().zip(y).filter(|(_, l)| *l != 1).unzip();
        let svm = LinearSvm::fit(&x, &y, 4, 1.0).unwrap();
        let (xt, _) = blobs(10, 10);
        for row in &xt {
            let (pred, values) = svm.decide(row);
            assert!(pred == 0 || pred == 2, "predicted {pred}");
            assert_eq!(values[1], f64::NEG_INFINITY);
            assert_eq!(values[3], f64::NEG_INFINITY);
        }
        // The points of the dropped class go to one of the trained ones.
        assert!(matches!(svm.decide(&[6.0, 0.0, 0.0, 0.0]).0, 0 | 2));
    }

    #[test]
    fn one_class_only_is_always_that_class() {
        let x = vec![vec![1.0f32, 2.0], vec![3.0, 4.0]];
        let svm = LinearSvm::fit(&x, &[2, 2], 3, 1.0).unwrap();
        for row in [[0.0f32, 0.0], [100.0, -5.0]] {
            let (pred, values) = svm.decide(&row);
            assert_eq!(pred, 2);
            assert_eq!(values, vec![f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0]);
        }
        // A NaN sample never picks an absent class either.
        let (x, y) = blobs(5, 11);
        let svm = LinearSvm::fit(&x, &y, 4, 1.0).unwrap();
        assert!(svm.decide(&[f32::NAN; 4]).0 < 3);
    }

    #[test]
    fn fit_rejects_bad_input() {
        let x = vec![vec![1.0f32, 2.0], vec![3.0, 4.0]];
        let err = |r: Result<LinearSvm, WorkerError>| r.unwrap_err().to_string();
        assert!(err(LinearSvm::fit(&[], &[], 2, 1.0)).contains("no training samples"));
        assert!(err(LinearSvm::fit(&x, &[0], 2, 1.0)).contains("1 labels for 2 samples"));
        assert!(err(LinearSvm::fit(&x, &[0, 5], 2, 1.0)).contains("label 5"));
        assert!(err(LinearSvm::fit(&x, &[0, 1], 2, 0.0)).contains("C = 0"));
        assert!(err(LinearSvm::fit(&x, &[0, 1], 0, 1.0)).contains("0 classes"));
        let ragged = vec![vec![1.0f32, 2.0], vec![3.0]];
        assert!(err(LinearSvm::fit(&ragged, &[0, 1], 2, 1.0)).contains("sample 1 has 1"));
        let nan = vec![vec![1.0f32, 2.0], vec![3.0, f32::NAN]];
        assert!(err(LinearSvm::fit(&nan, &[0, 1], 2, 1.0)).contains("feature 1 is NaN"));
    }

    #[test]
    fn standardiser_uses_training_statistics() {
        let x = vec![vec![1.0f32, 5.0, 7.0], vec![3.0, 5.0, 9.0]];
        let s = Standardiser::fit(&x).unwrap();
        let mut a = x[0].clone();
        s.apply(&mut a);
        assert_eq!(a, vec![-1.0, 0.0, -1.0]);
        let mut b = vec![4.0f32, 6.0, 8.0];
        s.apply(&mut b);
        assert_eq!(b, vec![2.0, 1.0, 0.0]);
        assert!(Standardiser::fit(&[]).is_err());
    }

    /// The cost of one LOSO fold of the composite: ~435 training rows of 5 x 5 x 3 x 59 = 4425
    /// histogram features, 3 classes. `cargo test -p mer-worker --lib baselines::svm -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_one_composite_fold() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dim = 5 * 5 * 3 * 59;
        let y: Vec<usize> = (0..435).map(|i| i % 3).collect();
        let x: Vec<Vec<f32>> = y
            .iter()
            .map(|&k| {
                (0..dim)
                    .map(|j| rng.random_range(0.0..0.034f32) + if j % 3 == k { 0.002 } else { 0.0 })
                    .collect()
            })
            .collect();
        let start = std::time::Instant::now();
        let svm = LinearSvm::fit(&x, &y, 3, 1.0).unwrap();
        let fit = start.elapsed().as_secs_f64();
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(r, &l)| svm.decide(r).0 == l)
            .count();
        println!("fit 435 x {dim}, 3 classes: {fit:.3} s; training accuracy {correct}/435");
    }

    #[test]
    fn gram_coordinates_give_the_svm_of_the_raw_features() {
        // More features than rows (as LBP-TOP has), overlapping classes so the margin is soft, and one
        // repeated row (a semi-definite Gram matrix).
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (n, d) = (30, 50);
        let mut x: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..d).map(|_| rng.random_range(0.0..1.0)).collect())
            .collect();
        x[7] = x[3].clone();
        let y: Vec<usize> = (0..n).map(|i| (i + (i % 7 == 0) as usize) % 3).collect();
        let test: Vec<Vec<f32>> = (0..5)
            .map(|_| (0..d).map(|_| rng.random_range(0.0..1.0)).collect())
            .collect();
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum()
        };
        let gram: Vec<f64> = (0..n * n).map(|k| dot(&x[k / n], &x[k % n])).collect();
        let basis = GramBasis::new(&gram, n).unwrap();
        let z = basis.train_rows();
        for i in 0..n {
            for j in 0..n {
                assert!(
                    (dot(&z[i], &z[j]) - gram[i * n + j]).abs() < 1e-4,
                    "{i},{j}"
                );
            }
        }
        let raw = LinearSvm::fit(&x, &y, 3, 1.0).unwrap();
        let fast = LinearSvm::fit(&z, &y, 3, 1.0).unwrap();
        for t in &test {
            let k: Vec<f64> = x.iter().map(|r| dot(r, t)).collect();
            let (pa, va) = raw.decide(t);
            let (pb, vb) = fast.decide(&basis.project(&k));
            assert_eq!(pa, pb);
            for (a, b) in va.iter().zip(&vb) {
                assert!((a - b).abs() < 1e-3, "{va:?} vs {vb:?}");
            }
        }
        assert!(GramBasis::new(&gram[1..], n).is_err());
    }
}
