//! A deterministic, fast stand-in for the training engine, for orchestration tests and benchmarks.
//!
//! Its output depends only on the task (payload, and the prior checkpoint's bytes for target tasks),
//! never on timing, worker, attempt or device, so a faulty run can be compared exactly with a fault-free
//! one. Prior tasks write a small checkpoint derived from the task key; target tasks predict each test
//! sample's class from a hash (right about 60% of the time). Every execution is counted in memory and,
//! when a log file is given, appended to it as one line `<task key>` (so tests can count executions
//! across worker processes).

use crate::agent::trainer::{Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError};
use crate::error::WorkerError;
use mer_shared::fixtures;
use mer_shared::fold::{EpochLog, FoldResult, SamplePrediction, Timings};
use mer_shared::loso::Role;
use mer_shared::metrics::Confusion;
use mer_shared::prepared::{Prepared, SampleMeta};
use mer_shared::task::TaskKind;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The simulated trainer.
#[derive(Debug, Default)]
pub struct SimTrainer {
    /// Simulated training time per task (split into 4 "epochs" with a progress report each).
    pub delay: Duration,
    /// Appends one line per execution to this file, if set.
    pub log: Option<PathBuf>,
    executions: AtomicU64,
    meta: parking_lot::Mutex<HashMap<PathBuf, Arc<Vec<SampleMeta>>>>,
    failing_fold: parking_lot::Mutex<Option<String>>,
}

impl SimTrainer {
    /// A trainer taking `delay` per task, logging executions to `log`.
    pub fn new(delay: Duration, log: Option<PathBuf>) -> Self {
        SimTrainer {
            delay,
            log,
            ..Default::default()
        }
    }

    /// Fault injection: every task of `fold` (`dataset/subject`) fails for good (a non-retryable error,
    /// as a bad sample or a GPU out of memory gives) until this is called again with `None`.
    pub fn fail_fold(&self, fold: Option<&str>) {
        *self.failing_fold.lock() = fold.map(str::to_string);
    }

    /// Tasks executed by this instance.
    pub fn executions(&self) -> u64 {
        self.executions.load(Ordering::Relaxed)
    }

    fn samples(&self, dataset: &Path) -> Result<Arc<Vec<SampleMeta>>, TrainerError> {
        if let Some(s) = self.meta.lock().get(dataset) {
            return Ok(s.clone());
        }
        let m = Prepared::read_meta(dataset)
            .map_err(|e| TrainerError::fatal(format!("{}: {e}", dataset.display())))?;
        let s = Arc::new(m.samples);
        self.meta.lock().insert(dataset.to_path_buf(), s.clone());
        Ok(s)
    }
}

fn h64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// Counts lines of a sim execution log by task key.
pub fn read_execution_log(path: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for l in text.lines().filter(|l| !l.is_empty()) {
            *out.entry(l.to_string()).or_insert(0) += 1;
        }
    }
    out
}

impl SimTrainer {
    /// Appends the task's key to the execution log, when there is one.
    fn log_execution(&self, task: &TaskSpec) -> Result<(), TrainerError> {
        if let Some(log) = &self.log {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| TrainerError::retryable(format!("{}: {e}", log.display())))?;
            f.write_all(format!("{}\n", task.key).as_bytes())
                .map_err(|e| TrainerError::retryable(format!("{}: {e}", log.display())))?;
        }
        Ok(())
    }

    /// Sleeps through `epochs` simulated epochs of `stage`, reporting each; stops when cancelled.
    fn simulate_epochs(
        &self,
        stage: &str,
        epochs: u32,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<Vec<EpochLog>, TrainerError> {
        let mut log = Vec::new();
        for epoch in 0..epochs {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainerError::retryable("cancelled"));
            }
            // Sleeps in slices, noticing a cancel within 50 ms (as a trainer does between batches).
            let until = std::time::Instant::now() + self.delay / epochs;
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                if left.is_zero() {
                    break;
                }
                if cancel.load(Ordering::Relaxed) {
                    return Err(TrainerError::retryable("cancelled"));
                }
                std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
            }
            let loss = 1.0 / (epoch as f64 + 1.0);
            progress(Progress {
                stage: stage.to_string(),
                epoch,
                epochs,
                loss,
                samples_per_s: 100.0,
                device: inputs.device.clone(),
                gpu_memory_bytes: None,
            });
            log.push(EpochLog {
                stage: stage.to_string(),
                epoch: epoch as usize,
                loss,
                monitor: None,
                unseen: None,
                samples_per_s: 0.0,
                test_predictions: Vec::new(),
                layers: Vec::new(),
            });
        }
        Ok(log)
    }
}

impl Trainer for SimTrainer {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        if self.failing_fold.lock().as_deref() == Some(task.fold.as_str()) {
            return Err(TrainerError::fatal(format!(
                "fold {}: CUDA out of memory (injected)",
                task.fold
            )));
        }
        self.executions.fetch_add(1, Ordering::Relaxed);
        self.log_execution(task)?;
        let samples = self.samples(&inputs.dataset)?;
        let epochs = 4u32;
        let stage = task.kind.key().to_string();
        let log = self.simulate_epochs(&stage, epochs, inputs, progress, cancel)?;
        match task.kind {
            TaskKind::Prior => {
                let ck = inputs.work_dir.join("prior.ckpt");
                let bytes = Sha256::digest(format!("sim-prior|{}", task.key).as_bytes());
                std::fs::write(&ck, bytes)
                    .map_err(|e| TrainerError::retryable(format!("{}: {e}", ck.display())))?;
                Ok(TaskOutput::Prior { checkpoint: ck })
            }
            TaskKind::Target => sim_target(task, inputs, &samples, log),
        }
    }
}

/// The result of a simulated target task: each test sample's class from a hash of the task key, the
/// prior checkpoint's bytes and the sample id (right about 60 % of the time), and per-epoch test
/// predictions in the epoch `log`.
fn sim_target(
    task: &TaskSpec,
    inputs: &TaskInputs,
    samples: &[SampleMeta],
    mut log: Vec<EpochLog>,
) -> Result<TaskOutput, TrainerError> {
    let prior: Vec<u8> = match &inputs.prior_checkpoint {
        Some(p) => std::fs::read(p)
            .map_err(|e| TrainerError::retryable(format!("{}: {e}", p.display())))?,
        None => Vec::new(),
    };
    let scheme = task.payload.scheme;
    let k = scheme.num_classes();
    let mut conf = Confusion::new(k);
    let mut preds = Vec::new();
    let held = task.payload.held_out();
    for s in samples
        .iter()
        .filter(|s| held.role(&s.fold_key()) == Role::Test)
    {
        let Some(&label) = s.labels.get(scheme.key()) else {
            continue;
        };
        let h = h64(&[task.key.as_bytes(), &prior, s.id.as_bytes()]);
        let pred = if h % 10 < 6 {
            label
        } else {
            ((h >> 8) % k as u64) as usize
        };
        conf.add(label, pred)
            .map_err(|e| TrainerError::fatal(format!("sample {}: {e}", s.id)))?;
        let mut probs = vec![0.1 / (k as f32 - 1.0).max(1.0); k];
        probs[pred] = 0.9;
        preds.push(SamplePrediction::new(s, label, pred, probs));
    }
    if preds.is_empty() {
        return Err(TrainerError::fatal(format!(
            "no test sample of {} under {}",
            held.describe(),
            scheme.key()
        )));
    }
    // Per-epoch test predictions for the leakage diagnostics: earlier epochs are right half
    // the time (hashed), the last epoch predicts what the result does.
    let last = log.len().saturating_sub(1);
    for (e, entry) in log.iter_mut().enumerate() {
        entry.test_predictions = preds
            .iter()
            .map(|p| {
                let r = &p.record;
                let h = h64(&[
                    task.key.as_bytes(),
                    p.id.as_bytes(),
                    &(e as u64).to_le_bytes(),
                ]);
                match (e == last, h % 2) {
                    (true, _) => r.pred,
                    (false, 0) => r.label,
                    (false, _) => ((h >> 8) % k as u64) as usize,
                }
            })
            .collect();
    }
    Ok(TaskOutput::Target(FoldResult {
        test_subject: task.payload.test_subject.clone(),
        scheme: scheme.key().into(),
        seed: task.payload.train.seed,
        device: "sim".into(),
        predictions: preds,
        confusion: conf,
        epochs: log,
        timings: Timings::default(),
    }))
}

/// Writes a small prepared file for orchestration tests and benchmarks: `subjects` subjects in each of
/// CASME II and SAMM (`subjects` more in SMIC), `per_subject` clips each, megc3 labels cycling over the
/// classes, a 2 x 10 x 2 x 2 flow tensor per clip. Deterministic: same arguments, same bytes.
pub fn write_sim_dataset(
    path: &Path,
    subjects: usize,
    per_subject: usize,
) -> Result<(), WorkerError> {
    sim_prepared(subjects, per_subject, false).write(path)?;
    Ok(())
}

/// The data of [`write_sim_dataset`]; with `groups`, also an `apex_flow` group (4 x 4, its values a
/// pattern of the clip's label plus a clip-dependent offset, so a classifier can learn it) and a `tim10`
/// group (10 frames of 4 x 4), for the tests of methods that read them.
pub fn sim_prepared(subjects: usize, per_subject: usize, groups: bool) -> Prepared {
    use mer_shared::Dataset;
    let mut samples = Vec::new();
    for part in Dataset::COMPOSITE {
        for s in 0..subjects {
            let subject = match part {
                Dataset::Smic => format!("s{:02}", s + 1),
                Dataset::Casme2 => format!("sub{:02}", s + 1),
                _ => format!("{:03}", s + 6),
            };
            for c in 0..per_subject {
                let filename = format!("clip{c:02}");
                let label = (s + c) % 3;
                samples.push(SampleMeta {
                    emotion: ["negative", "positive", "surprise"][label].into(),
                    crop_box: [0, 0, 2, 2],
                    ..fixtures::sample(part, &subject, &filename, &[("megc3", label)])
                });
            }
        }
    }
    let n = samples.len();
    let shape = [n, 2, 10, 2, 2];
    let flow: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| (i % 17) as f32 * 0.1)
        .collect();
    let mut info = fixtures::prep_info("sim", 2, 10);
    let mut group_data = mer_shared::prepared::Groups::default();
    if groups {
        info.apex_flow = Some(mer_shared::prepared::ApexFlowInfo {
            size: 4,
            channels: vec!["u".into(), "v".into(), "strain".into()],
        });
        info.tim10 = Some(mer_shared::prepared::Tim10Info {
            size: 4,
            frames: 10,
        });
        let mut apex = Vec::with_capacity(n * 48);
        let mut tim = Vec::with_capacity(n * 160);
        for (i, s) in samples.iter().enumerate() {
            let label = s.labels["megc3"];
            for j in 0..48 {
                let signal = if j % 3 == label { 1.0 } else { 0.0 };
                apex.push(signal + ((i * 7 + j) % 5) as f32 * 0.05);
            }
            tim.extend((0..160).map(|j| ((i * 31 + j * 7) % 251) as u8));
        }
        group_data.apex_flow = Some(apex);
        group_data.tim10 = Some(tim);
    }
    Prepared {
        info,
        samples,
        shape,
        flow,
        groups: group_data,
    }
}

/// A user-method task's shipped files, found among `artifacts` (hash -> local path) by their hash.
fn user_files(
    t: &TaskSpec,
    artifacts: &BTreeMap<String, PathBuf>,
) -> Result<Vec<(String, PathBuf)>, WorkerError> {
    let Some(mer_shared::method::BaselineSettings::User(u)) = &t.payload.baseline else {
        return Ok(vec![]);
    };
    u.files
        .iter()
        .map(|f| {
            artifacts
                .get(&f.sha256)
                .map(|p| (f.path.clone(), p.clone()))
                .ok_or_else(|| {
                    WorkerError::Training(format!(
                        "task {}: file {} (sha256 {}) is not among the plan's artifacts",
                        t.key, f.path, f.sha256
                    ))
                })
        })
        .collect()
}

/// Runs `tasks` with `trainer` directly, in the order given (prior tasks before the target tasks that
/// depend on them, as a plan lists them), without any coordinator: the fault-free reference that
/// orchestrated runs are compared with. `datasets` maps dataset hashes to files (as a plan's `datasets`
/// does), and the hashes of user methods' files to their local copies. Returns the target results by task
/// key.
pub fn reference_run(
    tasks: &[TaskSpec],
    datasets: &BTreeMap<String, PathBuf>,
    trainer: &dyn Trainer,
    work_dir: &Path,
) -> Result<BTreeMap<String, FoldResult>, WorkerError> {
    let mut checkpoints: HashMap<String, PathBuf> = HashMap::new();
    let mut out = BTreeMap::new();
    let cancel = AtomicBool::new(false);
    for t in tasks {
        let dataset = datasets
            .get(&t.payload.dataset_hash)
            .cloned()
            .ok_or_else(|| {
                WorkerError::Training(format!(
                    "task {}: dataset {} is not among the plan's datasets",
                    t.key, t.payload.dataset_hash
                ))
            })?;
        let wd = work_dir.join(&t.key[..16.min(t.key.len())]);
        std::fs::create_dir_all(&wd).map_err(|e| WorkerError::io(&wd, e))?;
        let inputs = TaskInputs {
            dataset,
            prior_checkpoint: t
                .payload
                .prior_key
                .as_ref()
                .and_then(|k| checkpoints.get(k).cloned()),
            work_dir: wd,
            device: "cpu".into(),
            files: user_files(t, datasets)?,
        };
        match trainer
            .run(t, &inputs, &mut |_| {}, &cancel)
            .map_err(|e| WorkerError::Training(e.message))?
        {
            TaskOutput::Prior { checkpoint } => {
                checkpoints.insert(t.key.clone(), checkpoint);
            }
            TaskOutput::Target(r) => {
                out.insert(t.key.clone(), r);
            }
        }
    }
    Ok(out)
}
