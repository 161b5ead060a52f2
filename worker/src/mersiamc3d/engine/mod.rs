//! The training engine's public API: prior learning ([`prior`]) and target learning ([`target`]) of one
//! LOSO fold, each a step on the one epoch loop ([`crate::train::epochs`]).
//!
//! Rules every function here keeps:
//! - The held-out subject (`dataset/subject`, [`SampleMeta::fold_key`]) is never seen during training: prior
//!   pairs, augmentation, epochs and every other choice use the fold's training subjects only, and there is
//!   no epoch selection (fixed budgets). Test samples are only ever run forward, unaugmented, at the end.
//! - Samples without a label under the scheme are ignored.
//! - Every random choice comes from ChaCha8 generators derived from `(cfg.seed, stage, epoch)` (init,
//!   pair split and sampling, shuffling, augmentation, dropout); libtorch's global generator is not used.
//!   Same data, config, seed and device give the same predictions, also after a resume.
//! - With [`Hooks::checkpoint_dir`], a checkpoint is written atomically after every epoch and a restarted run
//!   resumes after the last finished epoch. The prior-learning artifact is a safetensors file.

mod prior;
mod target;

use crate::error::WorkerError;
use crate::mersiamc3d::model::SinC3D;
use crate::train::checkpoint::{self, CHECKPOINT_FORMAT, PRIOR_FORMAT};
use crate::train::device::{configure, device_name, parse_devices};
use crate::train::epochs::Hooks;
use crate::train::fold::split_fold;
use crate::train::optim::ParamSet;
use crate::train::precision::Precision;
use mer_shared::fold::{EpochLog, FoldResult};
use mer_shared::labels::LabelScheme;
use mer_shared::loso::HeldOut;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::TrainConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// What prior learning produced for one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorSummary {
    /// The safetensors artifact (tower weights: conv1..conv5, dense).
    pub path: PathBuf,
    /// The held-out subject whose fold this is.
    pub test_subject: String,
    /// Training samples the pairs were built from.
    pub train_samples: usize,
    /// Training subjects kept out of prior learning (`prior.unseen_subjects`), whose pairs give each
    /// epoch's `unseen` accuracy.
    #[serde(default)]
    pub unseen_subjects: Vec<String>,
    /// Eq. 7's pair count (all pairs of training samples), and how many of them are same / different.
    pub pairs_total: u64,
    /// Same-class pairs among them.
    pub pairs_same: u64,
    /// Different-class pairs among them.
    pub pairs_different: u64,
    /// Per-epoch log (monitor: accuracy on the held-out 10% of pairs).
    pub epochs: Vec<EpochLog>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Device used.
    pub device: String,
}

/// Small settings for CPU tests and demos: widths 8/16/32/32/64, 48x48 input, dense 64, few epochs, two
/// augmented variants per sample and epoch. Same method, much less compute.
pub fn small_config() -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.widths = vec![8, 16, 32, 32, 64];
    c.model.input_size = 48;
    c.model.dense = 64;
    c.model.dropout = 0.3;
    c.prior.optim.epochs = 2;
    c.prior.optim.lr = 0.01;
    c.prior.pairs_per_epoch = 96;
    c.target.optim.epochs = 8;
    c.target.optim.lr = 0.01;
    c.target.optim.lr_step = 6;
    c.augment.variants_per_epoch = 2;
    c.device = "cpu".into();
    c
}

/// Stage 1 for one fold: trains on the training subjects of `held` only; writes a safetensors checkpoint to
/// `out`.
pub fn run_prior(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
    out: &Path,
    hooks: Hooks,
) -> Result<PriorSummary, WorkerError> {
    guard(|| prior::learn(data, scheme, held, cfg, out, hooks))
}

/// Stage 2 for one fold and one sweep point: init from `prior` (None = random init / "without prior
/// learning"), train on the training subjects of `held`, test on its test subjects.
pub fn run_target(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
    prior: Option<&Path>,
    hooks: Hooks,
) -> Result<FoldResult, WorkerError> {
    guard(|| target::learn(data, scheme, held, cfg, prior, hooks))
}

/// Both stages (what `mer train-fold` does). With `cfg.prior.enabled = false` the target stage starts from
/// random weights. With a checkpoint folder the prior artifact is kept there (`prior.safetensors`) and reused
/// by a rerun; without one it lives in a temporary file that is removed afterwards. Leave-one-subject-out
/// on `test_subject`.
pub fn train_fold(
    data: &Prepared,
    scheme: LabelScheme,
    test_subject: &str,
    cfg: &TrainConfig,
    mut hooks: Hooks,
) -> Result<FoldResult, WorkerError> {
    let t0 = Instant::now();
    let held = &HeldOut::subject(test_subject);
    if !cfg.prior.enabled {
        return run_target(data, scheme, held, cfg, None, hooks);
    }
    let (path, temporary) = match &hooks.checkpoint_dir {
        Some(d) => (d.join("prior.safetensors"), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!(
                    "mer-prior-{}-{nanos}.safetensors",
                    std::process::id()
                )),
                true,
            )
        }
    };
    let summary = match reuse_prior(&path, data, scheme, held, cfg) {
        Some(s) => {
            tracing::info!(path = %path.display(), "reusing the finished prior-learning artifact");
            s
        }
        None => run_prior(data, scheme, held, cfg, &path, hooks.reborrow())?,
    };
    let res = run_target(data, scheme, held, cfg, Some(&path), hooks);
    if temporary {
        let _ = std::fs::remove_file(&path);
    }
    let mut res = res?;
    let mut epochs = summary.epochs.clone();
    epochs.append(&mut res.epochs);
    res.epochs = epochs;
    res.timings.prior_s = summary.seconds;
    res.timings.total_s = t0.elapsed().as_secs_f64();
    Ok(res)
}

/// Runs `f`, turning a libtorch panic (an internal op failing) into a [`WorkerError`].
fn guard<T>(f: impl FnOnce() -> Result<T, WorkerError>) -> Result<T, WorkerError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(WorkerError::Torch {
                context: "training".into(),
                message: msg,
            })
        }
    }
}

/// Device, precision and geometry of a run.
struct Setup {
    /// Replica 0's device (the only one unless `devices_per_task > 1`).
    device: Device,
    /// Every replica's device, in replica order.
    devices: Vec<Device>,
    prec: Precision,
    model: SinC3D,
}

impl Setup {
    /// The devices as results record them: `cpu`, `cuda:0`, or `cuda:0,cuda:1` for replicas.
    fn device_names(&self) -> String {
        mer_shared::device::join_devices(
            &self
                .devices
                .iter()
                .map(|&d| device_name(d))
                .collect::<Vec<_>>(),
        )
    }
}

/// Validates the configuration ([`TrainConfig::validate`], the rules a spec is checked against) and
/// resolves its device.
fn setup(cfg: &TrainConfig, scheme: LabelScheme) -> Result<Setup, WorkerError> {
    cfg.validate(scheme.num_classes())
        .map_err(|e| WorkerError::InvalidOption {
            option: e.field,
            message: e.message,
        })?;
    let devices = parse_devices(&cfg.device, cfg.devices_per_task)?;
    let device = devices[0];
    // Process-wide settings; a task's replicas are all CPU or all CUDA devices, so one call covers them.
    configure(device, cfg.threads, cfg.fast_path);
    Ok(Setup {
        device,
        devices,
        prec: Precision::for_training(cfg.fast_path, device),
        model: SinC3D::new(&cfg.model)?,
    })
}

/// Identifies everything a stage's weights depend on except its epoch budget (so a run with a larger budget
/// can continue a finished shorter one: the schedule of the shared epochs is the same).
fn fingerprint(
    stage: &str,
    cfg: &TrainConfig,
    scheme: LabelScheme,
    held: &HeldOut,
    data: &Prepared,
    train: &[usize],
    extra: &str,
) -> String {
    let mut c = cfg.clone();
    c.prior.optim.epochs = 0;
    c.target.optim.epochs = 0;
    c.device = String::new();
    c.threads = None;
    if stage == "prior" {
        c.target = Default::default();
    }
    let mut h = Sha256::new();
    h.update(stage.as_bytes());
    h.update(serde_json::to_string(&c).unwrap_or_default().as_bytes());
    h.update(scheme.key().as_bytes());
    h.update(held.describe().as_bytes());
    h.update(format!("{:?}", data.shape).as_bytes());
    for &i in train {
        h.update(data.samples[i].id.as_bytes());
        h.update([0]);
    }
    h.update(extra.as_bytes());
    hex::encode(h.finalize())
}

/// A stage's per-epoch checkpoint: the folder it goes to (none: no checkpoints), the stage it belongs to and
/// the fingerprint a checkpoint must carry to be resumed.
struct StageCheckpoint {
    dir: Option<PathBuf>,
    stage: &'static str,
    fingerprint: String,
}

impl StageCheckpoint {
    /// Loads a matching checkpoint into `ps`; returns the earlier epochs' logs (none without one).
    fn resume(&self, ps: &mut ParamSet, prec: &Precision) -> Result<Vec<EpochLog>, WorkerError> {
        resume(self.dir.as_deref(), self.stage, &self.fingerprint, ps, prec)
    }

    /// Saves `ps` with the logs of every epoch so far (nothing without a folder).
    fn save(&self, ps: &ParamSet, logs: &[EpochLog]) -> Result<(), WorkerError> {
        save_checkpoint(self.dir.as_deref(), self.stage, &self.fingerprint, ps, logs)
    }
}

/// Loads a matching checkpoint from `dir`; returns the earlier epochs' logs (the next epoch is their count).
fn resume(
    dir: Option<&Path>,
    stage: &str,
    fp: &str,
    ps: &mut ParamSet,
    prec: &Precision,
) -> Result<Vec<EpochLog>, WorkerError> {
    let Some(dir) = dir else {
        return Ok(vec![]);
    };
    let path = dir.join(format!("{stage}.ckpt.safetensors"));
    if !path.exists() {
        return Ok(vec![]);
    }
    let f = checkpoint::load(&path, CHECKPOINT_FORMAT)?;
    if f.get(&path, "fingerprint")? != fp {
        tracing::warn!(path = %path.display(), "checkpoint belongs to another run; starting over");
        return Ok(vec![]);
    }
    let shapes: Vec<(String, Vec<i64>)> = ps
        .names()
        .iter()
        .cloned()
        .zip(ps.values().iter().map(|v| v.size()))
        .collect();
    checkpoint::check_shapes(&path, &f, &shapes)?;
    let logs: Vec<EpochLog> =
        serde_json::from_str(f.get(&path, "epochs")?).map_err(|e| WorkerError::Checkpoint {
            path: path.clone(),
            message: format!("metadata 'epochs': {e}"),
        })?;
    ps.load(&f.tensors, prec);
    tracing::info!(path = %path.display(), epochs_done = logs.len(), "resuming from checkpoint");
    Ok(logs)
}

fn save_checkpoint(
    dir: Option<&Path>,
    stage: &str,
    fp: &str,
    ps: &ParamSet,
    logs: &[EpochLog],
) -> Result<(), WorkerError> {
    let Some(dir) = dir else { return Ok(()) };
    let path = dir.join(format!("{stage}.ckpt.safetensors"));
    let mut tensors = ps.to_cpu();
    tensors.extend(ps.state_to_cpu());
    let meta: BTreeMap<String, String> = [
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("stage".into(), stage.into()),
        ("fingerprint".into(), fp.into()),
        (
            "epochs".into(),
            serde_json::to_string(logs).unwrap_or_default(),
        ),
    ]
    .into();
    checkpoint::save(&path, &tensors, &meta)
}

fn prior_fingerprint(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
) -> Result<String, WorkerError> {
    let fold = split_fold(data, scheme, held)?;
    Ok(fingerprint(
        "prior",
        cfg,
        scheme,
        held,
        data,
        &fold.train,
        "",
    ))
}

/// A finished prior artifact at `path` made with the same data/config/epochs, if any.
fn reuse_prior(
    path: &Path,
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
) -> Option<PriorSummary> {
    if !path.exists() {
        return None;
    }
    let f = checkpoint::load(path, PRIOR_FORMAT).ok()?;
    let fp = prior_fingerprint(data, scheme, held, cfg).ok()?;
    if f.meta.get("fingerprint")? != &fp {
        return None;
    }
    let s: PriorSummary = serde_json::from_str(f.meta.get("summary")?).ok()?;
    (s.epochs.len() == cfg.prior.optim.epochs).then_some(s)
}

#[cfg(test)]
mod tests;
