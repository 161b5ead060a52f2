//! Training settings of one fold (model, prior learning, target learning, augmentation, device).
//! Defaults are the paper's values; every field can be set in an experiment spec (`[train]` table) and
//! sweep axes override single fields per sweep point. Unknown fields are rejected.

use serde::{Deserialize, Serialize};

/// Everything that determines one fold's training, apart from the data and the test subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelConfig,
    /// Stage 1: siamese prior learning.
    pub prior: PriorConfig,
    /// Stage 2: target learning (classification).
    pub target: TargetConfig,
    /// On-the-fly training augmentation.
    pub augment: AugmentConfig,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// bf16 compute with fp32 master weights and channels-last-3d layout (CPU and CUDA); cuDNN autotune on CUDA.
    pub fast_path: bool,
    /// Intra-op threads for CPU training (`None`: libtorch's default).
    pub threads: Option<usize>,
    /// Seed of every random choice of this fold (init, pair sampling, batches, augmentation, dropout).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            prior: PriorConfig::default(),
            target: TargetConfig::default(),
            augment: AugmentConfig::default(),
            device: "auto".into(),
            fast_path: true,
            threads: None,
            seed: 0,
        }
    }
}

/// SinC3D and its heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Output channels of the five conv3d layers (paper: 32, 64, 128, 128, 256).
    pub widths: [i64; 5],
    /// Input height = width (paper: 112).
    pub input_size: i64,
    /// Flow frames (paper: 10).
    pub frames: i64,
    /// Flow channels (u, v: 2).
    pub channels: i64,
    /// Units of the dense layer after the conv stack (shared by both stages).
    pub dense: i64,
    /// Dropout before the softmax output in target learning.
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            widths: [32, 64, 128, 128, 256],
            input_size: 112,
            frames: 10,
            channels: 2,
            dense: 1024,
            dropout: 0.5,
        }
    }
}

/// The optimiser schedule shared by both stages: SGD with momentum, step decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Epochs (fixed budget: never selected on the test subject).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Divide the learning rate by `lr_divisor` every `lr_step` epochs.
    pub lr_step: usize,
    /// See `lr_step`.
    pub lr_divisor: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            epochs: 100,
            batch_size: 8,
            lr: 0.004,
            lr_step: 10,
            lr_divisor: 10.0,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }
}

/// Stage 1: siamese same/different pre-training on the fold's training subjects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    /// Run prior learning (false = "without prior learning", random init; the paper's Table 7).
    pub enabled: bool,
    /// Optimiser settings of this stage.
    pub optim: OptimConfig,
    /// Balanced pairs (half same, half different) drawn per epoch from eq. 7's full pair set.
    pub pairs_per_epoch: usize,
    /// Fraction of pairs held out to monitor prior learning.
    pub val_fraction: f64,
}

impl Default for PriorConfig {
    fn default() -> Self {
        PriorConfig {
            enabled: true,
            optim: OptimConfig {
                epochs: 20,
                ..OptimConfig::default()
            },
            pairs_per_epoch: 2000,
            val_fraction: 0.1,
        }
    }
}

/// Loss of the target stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum LossConfig {
    /// Multi-class focal loss `-sum_i y_i alpha_i (1 - p_i)^gamma log p_i`.
    Focal {
        /// Focusing parameter (paper: 2).
        gamma: f64,
        /// Class weights.
        alpha: Alpha,
    },
    /// Plain softmax cross-entropy.
    CrossEntropy,
}

/// Focal-loss alpha: one scalar for all classes (the paper's sweep 1..10) or one value per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Alpha {
    /// Same weight for every class.
    Scalar(f64),
    /// One weight per class.
    PerClass(Vec<f64>),
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::Focal {
            gamma: 2.0,
            alpha: Alpha::Scalar(1.0),
        }
    }
}

/// Stage 2: classification from the prior-learned network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// Optimiser settings of this stage (paper: SGD 0.9, lr 0.004 / 10 every 10 epochs, 100 epochs).
    pub optim: OptimConfig,
    /// The first k conv layers are frozen (0..=5).
    pub frozen_layers: usize,
    /// The loss.
    pub loss: LossConfig,
}

/// The 36x augmentation: 9 crop positions x 4 temporal variants, applied on the fly to training samples only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Use the 9 crop positions (cut `crop_px` pixels, resize back bilinearly, scale flow vectors).
    pub crops: bool,
    /// Use the 4 temporal variants (original, drop frame 1, drop frame 2, drop both; pad by repeating the last).
    pub temporal: bool,
    /// Pixels cut at the cropped side(s), drawn uniformly from this inclusive range.
    pub crop_px: [u32; 2],
    /// How many different variants of each training sample one target-learning epoch shows (capped at the
    /// number of enabled variants: 36 with crops and temporal on). 36 = the paper's 36x enlarged training set
    /// per epoch; smaller values draw a random subset of the variants per sample and epoch (faster epochs).
    #[serde(default = "default_variants_per_epoch")]
    pub variants_per_epoch: usize,
}

fn default_variants_per_epoch() -> usize {
    36
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crops: true,
            temporal: true,
            crop_px: [2, 5],
            variants_per_epoch: default_variants_per_epoch(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers_and_unknown_fields_are_rejected() {
        let c: TrainConfig = toml::from_str("").unwrap();
        assert_eq!(c.model.widths, [32, 64, 128, 128, 256]);
        assert_eq!(c.target.optim.lr, 0.004);
        let c: TrainConfig = toml::from_str("[target]\nfrozen_layers = 2\n[target.loss]\nkind = \"focal\"\ngamma = 2.0\nalpha = [1.0, 2.0, 3.0]\n").unwrap();
        assert_eq!(c.target.frozen_layers, 2);
        assert_eq!(
            c.target.loss,
            LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::PerClass(vec![1.0, 2.0, 3.0])
            }
        );
        let e = toml::from_str::<TrainConfig>("[target]\nfrozen = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("frozen"), "{e}");
    }
}
