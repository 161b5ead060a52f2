//! Training settings of one fold (model, prior learning, target learning, augmentation, device).
//! Defaults are the paper's values; every field can be set in an experiment spec (`[train]` table) and
//! sweep axes override single fields per sweep point. Unknown fields are rejected.

use serde::{Deserialize, Serialize};

/// The paper's number of SinC3D conv layers (the default `model.widths` has one width each). A spec may
/// give another number of widths; `target.frozen_layers` is bounded by the model's own count.
pub const CONV_LAYERS: usize = 5;

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
    /// Diagnostic: after every target epoch, record each layer's activation and gradient RMS on a fixed
    /// batch of training samples (`EpochLog::layers`). Changes no weight and draws no random number.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub layer_stats: bool,
    /// Diagnostic: test the held-out subject after every `eval_every`-th target epoch and store its
    /// predicted classes (`EpochLog::test_predictions`, the leakage diagnostics' input); nothing in
    /// training reads them. 1 (the default): every epoch; 0: only after the last, whose predictions are
    /// the result in any case. Changes no weight and draws no random number.
    #[serde(skip_serializing_if = "is_every_epoch")]
    pub eval_every: usize,
    /// Devices one MERSiamC3D task trains on data-parallel (one replica per device of one worker, each
    /// batch split over them, gradients summed before every step; `docs/engine.md`). 1, the default, is
    /// one device; the scheduler leases a task needing N only where N devices of one worker are idle.
    /// The baselines always train on one device. Left out of the serialised form (and so of task keys)
    /// when 1.
    #[serde(skip_serializing_if = "is_one_device")]
    pub devices_per_task: usize,
}

fn is_every_epoch(n: &usize) -> bool {
    *n == 1
}

fn is_one_device(n: &usize) -> bool {
    *n == 1
}

/// The most devices one task may train on (one worker's GPUs; NCCL runs within one process here).
pub const MAX_DEVICES_PER_TASK: usize = 64;

impl TrainConfig {
    /// Whether target epoch `epoch` (0-based) of `epochs` tests the held-out subject ([`evaluates_epoch`]).
    pub fn evaluates_epoch(&self, epoch: usize, epochs: usize) -> bool {
        evaluates_epoch(self.eval_every, epoch, epochs)
    }
}

/// The per-epoch test rule of every method: epoch `epoch` (0-based) of `epochs` tests the held-out subject
/// when it is the last (its predictions are the result) or every `eval_every`-th (0: only the last).
pub fn evaluates_epoch(eval_every: usize, epoch: usize, epochs: usize) -> bool {
    epoch + 1 == epochs || (epoch + 1).is_multiple_of(eval_every)
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
            layer_stats: false,
            eval_every: 1,
            devices_per_task: 1,
        }
    }
}

/// SinC3D and its heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Output channels of the conv3d layers, one per layer (paper: five, 32, 64, 128, 128, 256); a max-pool
    /// follows each. Fewer widths give a shallower tower (an ablation of the paper's depth).
    pub widths: Vec<i64>,
    /// Convolution kernel `[time, space]` (paper: `[3, 3]`, i.e. 3x3x3), both odd, "same" padding. `[1, k]`
    /// makes every layer a 2-D convolution per frame, which is what a one-frame input (`input_flow =
    /// "apex-sum"`) gets from a 3x3x3 kernel anyway, without the temporal taps that only ever see padding
    /// (they take no gradient, yet count in the initialisation's fan-in). Keyed apart only when not
    /// `[3, 3]`.
    #[serde(skip_serializing_if = "is_paper_kernel")]
    pub kernel: [i64; 2],
    /// Convolution groups of every conv layer: 1 (the paper) mixes u and v from the first layer; 2 with
    /// `channels = 2` gives two separate streams, one per flow component, as OFF-ApexNet's two towers (the
    /// dense layer joins them). `channels` and every width must be multiples. Keyed apart only when not 1.
    #[serde(skip_serializing_if = "is_one")]
    pub groups: i64,
    /// How the tower's weights and biases are drawn. Keyed apart only when not the default.
    #[serde(skip_serializing_if = "TowerInit::is_he")]
    pub init: TowerInit,
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
    /// How flow values are scaled at the network's input (after resizing to `input_size`).
    #[serde(skip_serializing_if = "InputScale::is_raw")]
    pub input_scale: InputScale,
    /// Which displacement each of the 10 input frames holds: the prepared consecutive key-frame flows (the
    /// paper's) or their running sum from the onset.
    #[serde(skip_serializing_if = "InputFlow::is_consecutive")]
    pub input_flow: InputFlow,
    /// The smallest spatial grid the tower pools down to: a 2x2 spatial pool is skipped when it would
    /// take the feature map below `min_grid` x `min_grid` (its temporal pooling is kept). 1, the default,
    /// pools after every conv layer as the paper does, which at its 112 px input leaves a 3 x 3 grid for the
    /// dense layer; at 48 px the same pools leave 1 x 1, so the dense layer sees no layout at all (which
    /// part of the face moved). `min_grid = 3` keeps the paper's 3 x 3 at 48 px. Keyed apart only when
    /// not 1.
    #[serde(skip_serializing_if = "is_one")]
    pub min_grid: i64,
}

/// True for 1, the default of `min_grid` (the paper's full pooling) and `groups` (one stream).
fn is_one(n: &i64) -> bool {
    *n == 1
}

fn is_paper_kernel(k: &[i64; 2]) -> bool {
    *k == [3, 3]
}

/// Initialisation of SinC3D's conv and dense layers (the output layer is always U(+-1/sqrt(fan_in)) with
/// zero bias). Both draw from the fold's seeded generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TowerInit {
    /// He uniform weights, U(+-sqrt(6 / fan_in)), zero biases: the variance-preserving choice for ReLU
    /// layers (the default; the paper does not say which it used).
    #[default]
    He,
    /// PyTorch's default for its conv and linear modules: weights and biases U(+-1/sqrt(fan_in)), about
    /// 2.4x smaller weights than He (what OFF-ApexNet and the other baselines get).
    Torch,
}

impl TowerInit {
    fn is_he(&self) -> bool {
        *self == TowerInit::He
    }
}

/// The displacement each input frame holds. `consecutive`: flow from key-frame i to i+1, as prepared (the
/// paper's input). `cumulative`: the running sum of those flows over frames 1..=i, an approximation of the
/// displacement from the onset key-frame (exact for small motion); its apex frame carries the whole
/// onset->apex motion that the apex-flow baselines read, instead of ten small steps. A per-sample
/// transform of the prepared tensor: it uses no other sample and no label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFlow {
    /// The prepared consecutive flows (the default).
    #[default]
    Consecutive,
    /// Running sum over the frames.
    Cumulative,
    /// One frame: the prepared flows summed from the first key-frame to the one nearest the apex
    /// ([`crate::prepared::SampleMeta::apex_keyframe`]), i.e. the onset->apex displacement the apex-flow
    /// baselines read, as a single-frame clip (`model.frames = 1`; the file keeps its 10 frames). A
    /// diagnostic: SinC3D on the baselines' form of the motion, to tell its temporal input from its
    /// network. Temporal augmentation has nothing to drop from one frame and leaves it unchanged.
    #[serde(rename = "apex-sum")]
    ApexSum,
}

impl InputFlow {
    fn is_consecutive(&self) -> bool {
        *self == InputFlow::Consecutive
    }
}

/// The gain applied to the flow at the network's input. SinC3D has no normalisation layer, so the input's
/// scale sets the scale of every activation and of the first layers' gradients: sub-pixel flow (typical
/// after downsizing 112 -> 48 px) trains slowly under the same learning rate. Never computed from a test
/// subject: `train-rms` is measured on the fold's training samples and the same gain is applied to its test
/// samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputScale {
    /// Flow in pixels of the input frame, as prepared and resized (the paper's input; the default).
    #[default]
    Raw,
    /// Divided by the root-mean-square flow value of the fold's training samples (both channels, every
    /// frame and pixel), so the training input has unit RMS.
    TrainRms,
    /// Each sample's channels min-max scaled to [0, 1] over all its frames and pixels, after augmentation
    /// (a constant channel becomes 0): the per-sample contrast normalisation the apex-flow baselines apply
    /// to their input (`baselines::cnn::normalise_inputs`), extended in time. It removes the expression's
    /// overall intensity and keeps its layout and time course; it uses no other sample, so nothing crosses
    /// folds, and train and test samples get the same rule.
    #[serde(rename = "sample-minmax")]
    SampleMinMax,
}

impl InputScale {
    /// True for the default, which task keys leave out so that keys of specs without it stay unchanged.
    pub fn is_raw(&self) -> bool {
        *self == InputScale::Raw
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            widths: vec![32, 64, 128, 128, 256],
            kernel: [3, 3],
            groups: 1,
            init: TowerInit::He,
            input_size: 112,
            frames: 10,
            channels: 2,
            dense: 1024,
            dropout: 0.5,
            input_scale: InputScale::Raw,
            input_flow: InputFlow::Consecutive,
            min_grid: 1,
        }
    }
}

/// Which update rule an [`OptimConfig`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimKind {
    /// SGD with momentum (the paper's; the default).
    #[default]
    Sgd,
    /// Adam as PyTorch defines it (beta1 0.9, beta2 0.999, eps 1e-8; `weight_decay` as L2 added to the
    /// gradient; `momentum` unused): the optimiser the baselines (STSTNet, OFF-ApexNet) train with, and one
    /// whose per-parameter step sizes do not depend on the scale of each layer's gradient.
    Adam,
}

impl OptimKind {
    /// True for the default, which task keys leave out so that keys of specs without it stay unchanged.
    pub fn is_sgd(&self) -> bool {
        *self == OptimKind::Sgd
    }
}

/// The optimiser schedule shared by both stages: SGD with momentum (or Adam), step decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// The update rule (`sgd`, the paper's, or `adam`). Keyed apart only when not `sgd`.
    #[serde(skip_serializing_if = "OptimKind::is_sgd")]
    pub kind: OptimKind,
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
            kind: OptimKind::Sgd,
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
    /// Training subjects (chosen by the seed) whose clips prior learning never sees: each epoch's
    /// `unseen` accuracy is measured on pairs of their clips, so it says whether the features carry to
    /// people the prior did not learn from (the held-out pairs share clips with the learning pairs).
    /// Target learning still trains on them. 0 (default) = off.
    #[serde(skip_serializing_if = "is_zero")]
    pub unseen_subjects: usize,
    /// A control: the learning clips' labels are permuted among them (by the seed) before the pairs are
    /// drawn, so "same" and "different" say nothing about the expression while the clips, the pair
    /// counts and the schedule stay as they were. What a prior trained so gives target learning is what
    /// the stage's optimisation gives without features of expressions. The held-out pairs are judged
    /// by the permuted labels (they measure fit); the unseen subjects' pairs by the true ones. Keyed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shuffle_labels: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
            unseen_subjects: 0,
            shuffle_labels: false,
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
    /// The first k conv layers are frozen (0 up to the number of `model.widths`, 5 in the paper).
    pub frozen_layers: usize,
    /// The loss.
    pub loss: LossConfig,
    /// Weights each class's loss by its inverse frequency among the fold's training samples
    /// (`n / (K n_c)` over the K classes present, mean 1; multiplies the focal alphas; turns cross-entropy into
    /// weighted cross-entropy), so that the majority class does not dominate the gradient. Computed on the
    /// training subjects only. Off by default (the paper's loss); keyed apart only when on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub balance_classes: bool,
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

/// A training setting outside its range: the field's dotted path below `[train]` (e.g.
/// `target.optim.lr`), or from the spec's root for a baseline's table (`methods.ststnet.lr`), and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field below `[train]`.
    pub field: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Baseline settings live in `[methods.<name>]`, everything else below `[train]`.
        if self.field.starts_with("methods.") {
            write!(f, "{}: {}", self.field, self.message)
        } else {
            write!(f, "train.{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ModelConfig {
    /// Checks the network's geometry settings (part of [`TrainConfig::validate`]; SinC3D checks them
    /// again where a model is built from a bare `ModelConfig`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError {
            field: field.to_string(),
            message,
        };
        let m = self;
        if m.widths.is_empty() {
            return Err(bad(
                "model.widths",
                "model.widths is empty: the tower needs at least one conv layer".into(),
            ));
        }
        if let Some(w) = m.widths.iter().find(|w| **w <= 0) {
            return Err(bad(
                "model.widths",
                format!("conv width {w} must be positive"),
            ));
        }
        if let Some(k) = m.kernel.iter().find(|k| **k < 1 || *k % 2 == 0) {
            return Err(bad(
                "model.kernel",
                format!(
                    "model.kernel = {:?}: each side must be odd and positive (\"same\" padding), not {k}",
                    m.kernel
                ),
            ));
        }
        if m.groups < 1 {
            return Err(bad(
                "model.groups",
                format!("model.groups = {} must be positive", m.groups),
            ));
        }
        if let Some(n) = std::iter::once(&m.channels)
            .chain(&m.widths)
            .find(|n| **n % m.groups != 0)
        {
            return Err(bad(
                "model.groups",
                format!(
                    "model.groups = {}: model.channels ({}) and every width ({:?}) must be multiples of it; \
                     {n} is not",
                    m.groups, m.channels, m.widths
                ),
            ));
        }
        for (name, v) in [
            ("input_size", m.input_size),
            ("frames", m.frames),
            ("channels", m.channels),
            ("dense", m.dense),
        ] {
            if v <= 0 {
                return Err(bad(
                    &format!("model.{name}"),
                    format!("model.{name} = {v} must be positive"),
                ));
            }
        }
        // The paper's pooling (min_grid 1) halves the face after every conv layer (five times: 32 px at
        // least); with a larger min_grid the pools stop at that grid, so only the grid itself bounds the input.
        let layers = m.widths.len().min(30) as u32;
        let needed = 1i64 << layers;
        if m.min_grid == 1 && m.input_size < needed {
            return Err(bad(
                "model.input_size",
                format!(
                    "model.input_size = {} is too small: {layers} 2x2 spatial pools need at least {needed} \
                     (or set model.min_grid to stop pooling at a coarser grid)",
                    m.input_size
                ),
            ));
        }
        if !(1..=m.input_size).contains(&m.min_grid) {
            return Err(bad(
                "model.min_grid",
                format!(
                    "model.min_grid = {} must be between 1 and model.input_size ({})",
                    m.min_grid, m.input_size
                ),
            ));
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return Err(bad(
                "model.dropout",
                format!("model.dropout = {} must be in [0, 1)", m.dropout),
            ));
        }
        if m.input_flow == InputFlow::ApexSum && m.frames != 1 {
            return Err(bad(
                "model.frames",
                format!(
                    "model.input_flow = \"apex-sum\" gives one frame: model.frames must be 1, not {}",
                    m.frames
                ),
            ));
        }
        Ok(())
    }

    /// Whether this model can read a prepared file with `file_frames` flow frames: the same number, or
    /// any number when `input_flow = "apex-sum"` collapses them into the one frame the model expects.
    pub fn reads_file_frames(&self, file_frames: i64) -> bool {
        match self.input_flow {
            InputFlow::ApexSum => self.frames == 1,
            InputFlow::Consecutive | InputFlow::Cumulative => self.frames == file_frames,
        }
    }
}

impl TrainConfig {
    /// Checks every range of the configuration (nothing dataset-dependent except the number of
    /// classes, for per-class alphas). The one definition of what a valid `[train]` is: the spec
    /// parser, the engine and `mer train-fold --spec` all call it.
    pub fn validate(&self, classes: usize) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError {
            field: field.to_string(),
            message,
        };
        self.model.validate()?;
        if !(1..=MAX_DEVICES_PER_TASK).contains(&self.devices_per_task) {
            return Err(bad(
                "devices_per_task",
                format!(
                    "devices_per_task = {} must be between 1 and {MAX_DEVICES_PER_TASK}",
                    self.devices_per_task
                ),
            ));
        }
        let m = &self.model;
        for (stage, o) in [("prior", &self.prior.optim), ("target", &self.target.optim)] {
            let p = |f: &str| format!("{stage}.optim.{f}");
            if o.epochs == 0 {
                return Err(bad(
                    &p("epochs"),
                    format!("{stage}.optim.epochs must be at least 1"),
                ));
            }
            if o.batch_size == 0 {
                return Err(bad(
                    &p("batch_size"),
                    format!("{stage}.optim.batch_size must be at least 1"),
                ));
            }
            if !(o.lr.is_finite() && o.lr > 0.0) {
                return Err(bad(
                    &p("lr"),
                    format!("{stage}.optim.lr = {} must be a positive number", o.lr),
                ));
            }
            if o.lr_step == 0 {
                return Err(bad(
                    &p("lr_step"),
                    format!("{stage}.optim.lr_step must be at least 1"),
                ));
            }
            if !(o.lr_divisor.is_finite() && o.lr_divisor > 0.0) {
                return Err(bad(
                    &p("lr_divisor"),
                    format!("{stage}.optim.lr_divisor = {} must be > 0", o.lr_divisor),
                ));
            }
            if !(0.0..1.0).contains(&o.momentum) {
                return Err(bad(
                    &p("momentum"),
                    format!("{stage}.optim.momentum = {} must be in [0, 1)", o.momentum),
                ));
            }
            if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
                return Err(bad(
                    &p("weight_decay"),
                    format!(
                        "{stage}.optim.weight_decay = {} must be >= 0",
                        o.weight_decay
                    ),
                ));
            }
        }
        if self.prior.pairs_per_epoch < 2 {
            return Err(bad(
                "prior.pairs_per_epoch",
                "prior.pairs_per_epoch must be at least 2 (one same and one different pair)".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.prior.val_fraction) {
            return Err(bad(
                "prior.val_fraction",
                format!(
                    "prior.val_fraction = {} must be in [0, 1)",
                    self.prior.val_fraction
                ),
            ));
        }
        let layers = self.model.widths.len();
        if self.target.frozen_layers > layers {
            return Err(bad(
                "target.frozen_layers",
                format!(
                    "frozen_layers {} is out of range: this SinC3D has {layers} conv layers (0..={layers})",
                    self.target.frozen_layers
                ),
            ));
        }
        if let LossConfig::Focal { gamma, alpha } = &self.target.loss {
            if !(gamma.is_finite() && *gamma >= 0.0) {
                return Err(bad(
                    "target.loss.gamma",
                    format!("focal gamma {gamma} must be >= 0"),
                ));
            }
            match alpha {
                Alpha::Scalar(a) if !(a.is_finite() && *a > 0.0) => {
                    return Err(bad(
                        "target.loss.alpha",
                        format!("focal alpha {a} must be a positive number"),
                    ))
                }
                Alpha::PerClass(v) if v.len() != classes => {
                    return Err(bad(
                        "target.loss.alpha",
                        format!(
                            "{} per-class alphas given, the label scheme has {classes} classes",
                            v.len()
                        ),
                    ))
                }
                Alpha::PerClass(v) if v.iter().any(|a| !(a.is_finite() && *a > 0.0)) => {
                    return Err(bad(
                        "target.loss.alpha",
                        "every per-class alpha must be a positive number".into(),
                    ))
                }
                _ => {}
            }
        }
        if self.augment.crop_px[0] > self.augment.crop_px[1] {
            return Err(bad(
                "augment.crop_px",
                format!(
                    "augment.crop_px {:?} must be [min, max] with min <= max",
                    self.augment.crop_px
                ),
            ));
        }
        if self.augment.variants_per_epoch == 0 {
            return Err(bad(
                "augment.variants_per_epoch",
                "augment.variants_per_epoch must be at least 1".into(),
            ));
        }
        if self.augment.crops && self.augment.crop_px[1] as i64 * 2 >= m.input_size {
            return Err(bad(
                "augment.crop_px",
                format!(
                    "augment.crop_px max {} is too large for input_size {}",
                    self.augment.crop_px[1], m.input_size
                ),
            ));
        }
        if let Err(m) = crate::device::replica_specs(&self.device, self.devices_per_task) {
            return Err(bad("device", format!("device {m}")));
        }
        if self.threads == Some(0) {
            return Err(bad(
                "threads",
                "threads must be at least 1 (leave it out for libtorch's default)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_epoch_is_always_tested_the_others_every_eval_every() {
        let tested = |every: usize| -> Vec<usize> {
            (0..6).filter(|&e| evaluates_epoch(every, e, 6)).collect()
        };
        assert_eq!(tested(1), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(tested(2), vec![1, 3, 5]);
        assert_eq!(tested(4), vec![3, 5]);
        assert_eq!(tested(0), vec![5]);
        assert!(TrainConfig::default().evaluates_epoch(0, 6));
    }

    #[test]
    fn validate_names_the_field_of_each_bad_setting() {
        assert_eq!(TrainConfig::default().validate(3), Ok(()));
        let field = |f: &dyn Fn(&mut TrainConfig)| {
            let mut c = TrainConfig::default();
            f(&mut c);
            c.validate(3).unwrap_err().field
        };
        assert_eq!(field(&|c| c.target.optim.lr = 0.0), "target.optim.lr");
        assert_eq!(
            field(&|c| c.prior.optim.batch_size = 0),
            "prior.optim.batch_size"
        );
        assert_eq!(
            field(&|c| c.prior.pairs_per_epoch = 1),
            "prior.pairs_per_epoch"
        );
        assert_eq!(field(&|c| c.model.input_size = 16), "model.input_size");
        // With pools bounded by min_grid a small input is valid, as long as it holds that grid.
        let mut c = TrainConfig::default();
        (c.model.input_size, c.model.min_grid) = (28, 7);
        assert!(c.validate(3).is_ok());
        assert_eq!(
            field(&|c| (c.model.input_size, c.model.min_grid) = (6, 7)),
            "model.min_grid"
        );
        assert_eq!(field(&|c| c.model.dense = 0), "model.dense");
        assert_eq!(field(&|c| c.model.min_grid = 0), "model.min_grid");
        assert_eq!(field(&|c| c.model.min_grid = 113), "model.min_grid");
        assert_eq!(
            field(&|c| c.target.frozen_layers = 6),
            "target.frozen_layers"
        );
        assert_eq!(field(&|c| c.device = "gpu".into()), "device");
        assert_eq!(field(&|c| c.threads = Some(0)), "threads");
        let mut c = TrainConfig::default();
        c.target.loss = LossConfig::Focal {
            gamma: 2.0,
            alpha: Alpha::PerClass(vec![1.0, 2.0]),
        };
        let e = c.validate(3).unwrap_err();
        assert_eq!(e.field, "target.loss.alpha");
        assert!(e.to_string().contains("3 classes"), "{e}");
        assert_eq!(c.validate(2), Ok(()));
        // The model's own check is the same rule.
        let mut m = ModelConfig::default();
        m.widths[2] = 0;
        assert_eq!(m.validate().unwrap_err().field, "model.widths");
        m.widths.clear();
        assert_eq!(m.validate().unwrap_err().field, "model.widths");
        // The tower's shape: odd kernels, groups dividing the channels and every width, and an input
        // large enough for one 2x2 pool per layer (two layers: 4 px; the paper's five: 32 px).
        for (k, ok) in [
            ([1, 5], true),
            ([3, 3], true),
            ([2, 3], false),
            ([3, 0], false),
        ] {
            let m = ModelConfig {
                kernel: k,
                ..ModelConfig::default()
            };
            assert_eq!(m.validate().is_ok(), ok, "kernel {k:?}");
            if !ok {
                assert_eq!(m.validate().unwrap_err().field, "model.kernel");
            }
        }
        for (groups, widths, ok) in [
            (2, vec![12, 32], true),
            (2, vec![12, 33], false),
            (3, vec![12, 33], false), // channels 2 is not a multiple of 3
            (0, vec![12, 32], false),
        ] {
            let m = ModelConfig {
                groups,
                widths: widths.clone(),
                input_size: 28,
                ..ModelConfig::default()
            };
            assert_eq!(
                m.validate().is_ok(),
                ok,
                "groups {groups} widths {widths:?}"
            );
            if !ok {
                assert_eq!(m.validate().unwrap_err().field, "model.groups");
            }
        }
        let shallow = ModelConfig {
            widths: vec![6, 16],
            input_size: 4,
            ..ModelConfig::default()
        };
        assert_eq!(shallow.validate(), Ok(()));
        let e = ModelConfig {
            input_size: 3,
            ..shallow
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "model.input_size");
        assert!(e.message.contains("need at least 4"), "{e}");
        // apex-sum reads one frame from a file of any length; the others read the file's frames.
        let mut m = ModelConfig {
            input_flow: InputFlow::ApexSum,
            ..ModelConfig::default()
        };
        assert_eq!(m.validate().unwrap_err().field, "model.frames");
        assert!(!m.reads_file_frames(10));
        m.frames = 1;
        assert_eq!(m.validate(), Ok(()));
        assert!(m.reads_file_frames(10) && m.reads_file_frames(1));
        assert!(ModelConfig::default().reads_file_frames(10));
        assert!(!ModelConfig::default().reads_file_frames(8));
    }

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

    #[test]
    fn frozen_layers_are_bounded_by_the_models_own_depth() {
        let mut c = TrainConfig::default();
        c.target.frozen_layers = 5;
        assert_eq!(c.validate(3), Ok(()));
        c.model.widths = vec![6, 16];
        c.model.input_size = 28;
        let e = c.validate(3).unwrap_err();
        assert_eq!(e.field, "target.frozen_layers");
        assert!(e.message.contains("2 conv layers"), "{e}");
        c.target.frozen_layers = 2;
        assert_eq!(c.validate(3), Ok(()));
    }

    #[test]
    fn tower_options_at_their_defaults_leave_the_serialised_config_unchanged() {
        // Task keys and fingerprints hash the serialised config: a spec that does not set the new tower
        // options must keep the keys (and cached results) it had before they existed.
        let json = serde_json::to_string(&ModelConfig::default()).unwrap();
        for key in ["kernel", "groups", "init"] {
            assert!(!json.contains(key), "{key} in {json}");
        }
        let m: ModelConfig =
            toml::from_str("widths = [12, 32]\nkernel = [1, 5]\ngroups = 2\ninit = \"torch\"\n")
                .unwrap();
        assert_eq!((m.kernel, m.groups, m.init), ([1, 5], 2, TowerInit::Torch));
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains("\"kernel\":[1,5]") && json.contains("\"init\":\"torch\""),
            "{json}"
        );
    }
}
