//! The result of training and testing one LOSO fold: what a worker reports and the coordinator pools.

use crate::metrics::Confusion;
use crate::predictions::PredictionRecord;
use crate::prepared::SampleMeta;
use serde::{Deserialize, Serialize};

/// One test sample's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplePrediction {
    /// Sample id (`dataset/subject/filename`).
    pub id: String,
    /// The prediction record (dataset, subject, filename, label, pred).
    #[serde(flatten)]
    pub record: PredictionRecord,
    /// Softmax class probabilities.
    pub probs: Vec<f32>,
}

/// The predicted class of a row of class scores: the first index of the largest score (every method and
/// every per-epoch evaluation uses this one rule, so ties break the same way everywhere).
pub fn predicted_class(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold(0, |b, (i, &p)| if p > scores[b] { i } else { b })
}

impl SamplePrediction {
    /// The outcome for `sample`: its true `label`, the predicted class and the class probabilities.
    pub fn new(sample: &SampleMeta, label: usize, pred: usize, probs: Vec<f32>) -> Self {
        SamplePrediction {
            id: sample.id.clone(),
            record: PredictionRecord {
                dataset: sample.dataset,
                subject: sample.subject.clone(),
                filename: sample.filename.clone(),
                label,
                pred,
            },
            probs,
        }
    }
}

/// One epoch's training log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// `prior` or `target`.
    pub stage: String,
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss (NaN where none was reported: a user method's epoch known only from its
    /// per-epoch test predictions; JSON writes it as `null`, which reads back as NaN).
    #[serde(deserialize_with = "loss_or_null")]
    pub loss: f64,
    /// Monitoring metric where the stage has one (prior: held-out pair accuracy); never the test subject.
    pub monitor: Option<f64>,
    /// Prior learning with `prior.unseen_subjects`: pair accuracy on the clips of training subjects
    /// that prior learning never saw (never the test subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen: Option<f64>,
    /// Training throughput.
    pub samples_per_s: f64,
    /// Predicted class of every test sample after this epoch, in [`FoldResult::predictions`] order. Only
    /// for the leakage diagnostics (what choosing the epoch on the test subject would have given); nothing
    /// in training reads them. Empty for prior learning, for methods without epochs, and in results
    /// written before they were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_predictions: Vec<usize>,
    /// Per-layer magnitudes at the end of the epoch (only with `train.layer_stats`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerStats>,
}

/// Reads a loss that JSON may hold as `null` (serde_json writes a NaN so) as NaN.
fn loss_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One layer's magnitudes on a fixed batch of training samples (no augmentation, no dropout): what shows a
/// layer whose signal or gradient vanishes or explodes. RMS = root mean square over all elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// `input`, `conv1` ... `conv5` (after pooling and ReLU), `dense`, `out` (logits).
    pub layer: String,
    /// RMS of the layer's output.
    pub activation_rms: f64,
    /// RMS of the layer's weights (`None` for the input).
    pub weight_rms: Option<f64>,
    /// RMS of the loss gradient with respect to the layer's weights (`None` for the input and for frozen
    /// layers).
    pub grad_rms: Option<f64>,
}

/// Wall-clock timings of a fold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds in prior learning.
    pub prior_s: f64,
    /// Seconds in target learning.
    pub target_s: f64,
    /// Seconds in testing.
    pub test_s: f64,
    /// Total seconds.
    pub total_s: f64,
}

/// Everything one fold produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The held-out subject, `dataset/subject`.
    pub test_subject: String,
    /// Label scheme key.
    pub scheme: String,
    /// Seed used.
    pub seed: u64,
    /// Device the fold ran on (`cpu`, `cuda:0`...).
    pub device: String,
    /// Every test sample's prediction.
    pub predictions: Vec<SamplePrediction>,
    /// The fold's confusion counts (to be pooled, never averaged).
    pub confusion: Confusion,
    /// Per-epoch training log.
    pub epochs: Vec<EpochLog>,
    /// Timings.
    pub timings: Timings,
}

#[cfg(test)]
mod tests {
    use super::predicted_class;

    #[test]
    fn an_epoch_without_a_loss_round_trips_through_json() {
        let e = super::EpochLog {
            stage: "target".into(),
            epoch: 0,
            loss: f64::NAN,
            monitor: None,
            unseen: None,
            samples_per_s: 0.0,
            test_predictions: vec![1],
            layers: vec![],
        };
        let j = serde_json::to_string(&e).unwrap();
        assert!(j.contains("\"loss\":null"), "{j}");
        let back: super::EpochLog = serde_json::from_str(&j).unwrap();
        assert!(back.loss.is_nan());
        assert_eq!(back.test_predictions, vec![1]);
    }

    #[test]
    fn the_predicted_class_is_the_first_largest_score() {
        assert_eq!(predicted_class(&[0.2, 0.5, 0.3]), 1);
        assert_eq!(predicted_class(&[0.4, 0.4, 0.2]), 0);
        assert_eq!(predicted_class(&[0.1, 0.45, 0.45]), 1);
        assert_eq!(predicted_class(&[f32::NAN, 0.3, 0.7]), 0);
    }
}
