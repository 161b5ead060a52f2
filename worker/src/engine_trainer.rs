//! The real libtorch trainer behind `mer worker`: adapts the agent's [`Trainer`] interface to the training
//! engine ([`crate::mersiamc3d::engine::run_prior`], [`crate::mersiamc3d::engine::run_target`]) and the baselines
//! ([`crate::baselines::run_baseline`]). Only this module and the engine need libtorch (the `torch`
//! feature); the agent and the simulated trainer build without it.

use crate::agent::dataset_cache::DatasetCache;
use crate::agent::trainer::{Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError};
use crate::baselines::run_baseline;
use crate::error::WorkerError;
use crate::mersiamc3d::engine::{run_prior, run_target};
use crate::train::epochs::Hooks;
use mer_shared::fold::EpochLog;
use mer_shared::task::TaskKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs prior and target tasks with the libtorch engine, keeping the last prepared dataset it loaded.
#[derive(Default)]
pub struct EngineTrainer {
    cache: Arc<DatasetCache>,
}

impl EngineTrainer {
    /// A trainer with an empty dataset cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A trainer that keeps its datasets in `cache`, shared with another trainer of the same worker (so a
    /// worker running built-in and user methods holds one copy of the data, not two).
    pub fn with_cache(cache: Arc<DatasetCache>) -> Self {
        EngineTrainer { cache }
    }
}

/// Whether another attempt of the same task can succeed after this error.
fn trainer_error(e: WorkerError) -> TrainerError {
    match e {
        WorkerError::UnknownTestSubject { .. }
        | WorkerError::InvalidOption { .. }
        | WorkerError::BadSample { .. }
        | WorkerError::Shared(_) => TrainerError::fatal(e.to_string()),
        other => TrainerError::retryable(other.to_string()),
    }
}

impl Trainer for EngineTrainer {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        let p = &task.payload;
        let data = self.cache.get(&inputs.dataset, &p.parts)?;
        let mut cfg = p.train.clone();
        if cfg.device == "auto" && !inputs.device.is_empty() {
            cfg.device = inputs.device.clone();
        }
        let (stage, epochs) = match (task.kind, &p.baseline) {
            (TaskKind::Prior, _) => ("prior", cfg.prior.optim.epochs),
            (TaskKind::Target, None) => ("target", cfg.target.optim.epochs),
            (TaskKind::Target, Some(b)) => ("target", b.epochs().unwrap_or(0)),
        };
        // The engine resolves the same spec again; here it names the device in heartbeats and says
        // which device's memory to read after each epoch.
        // Baselines train on one device: their payloads carry devices_per_task = 1.
        let device = crate::train::device::parse_devices(&cfg.device, cfg.devices_per_task)
            .map_err(trainer_error)?[0];
        let device_name = crate::train::device::device_name(device);
        let mut on_epoch = |log: &EpochLog| {
            progress(Progress {
                stage: log.stage.clone(),
                epoch: log.epoch as u32,
                epochs: if log.stage == stage { epochs as u32 } else { 0 },
                loss: log.loss,
                samples_per_s: log.samples_per_s,
                device: device_name.clone(),
                gpu_memory_bytes: crate::train::device::memory_in_use(device),
            })
        };
        // The engine polls an Arc<AtomicBool>; mirror the agent's flag into it while the task runs.
        let stop = Arc::new(AtomicBool::new(false));
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if cancel.load(Ordering::Relaxed) {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let hooks = Hooks {
                on_epoch: Some(&mut on_epoch),
                checkpoint_dir: Some(inputs.work_dir.join("checkpoints")),
                cancel: Some(stop.clone()),
            };
            let held = p.held_out();
            let out = match (task.kind, &p.baseline) {
                (TaskKind::Prior, _) => {
                    let path = inputs.work_dir.join("prior.safetensors");
                    run_prior(&data, p.scheme, &held, &cfg, &path, hooks)
                        .map(|_| TaskOutput::Prior { checkpoint: path })
                }
                (TaskKind::Target, Some(b)) => {
                    run_baseline(&data, p.scheme, &held, b, &cfg, hooks).map(TaskOutput::Target)
                }
                (TaskKind::Target, None) => {
                    if cfg.prior.enabled && inputs.prior_checkpoint.is_none() {
                        done.store(true, Ordering::Relaxed);
                        return Err(TrainerError::fatal(format!(
                            "task {}: prior learning is enabled but no prior checkpoint was provided",
                            task.key
                        )));
                    }
                    let prior = if cfg.prior.enabled {
                        inputs.prior_checkpoint.as_deref()
                    } else {
                        None
                    };
                    run_target(&data, p.scheme, &held, &cfg, prior, hooks).map(TaskOutput::Target)
                }
            };
            done.store(true, Ordering::Relaxed);
            out.map_err(trainer_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::random_prepared;
    use crate::mersiamc3d::engine::small_config;
    use mer_shared::labels::LabelScheme;
    use mer_shared::task::TaskPayload;

    /// A real target fold (small model, CPU, no prior): every progress report names the device and, on a
    /// CPU, carries no GPU memory; the epochs count up to the stage's.
    #[test]
    fn progress_reports_name_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let mut train = small_config();
        train.prior.enabled = false;
        train.target.optim.epochs = 2;
        train.device = "auto".into();
        let data = random_prepared(12, &train.model, 5);
        let path = dir.path().join("data.safetensors");
        data.write(&path).unwrap();
        let task = TaskSpec {
            key: "k".into(),
            kind: TaskKind::Target,
            fold: "casme2/sub01".into(),
            sweep_point: Some(0),
            attempt: 1,
            payload: TaskPayload {
                dataset_hash: String::new(),
                scheme: LabelScheme::Megc3,
                parts: vec![],
                test_subject: "casme2/sub01".into(),
                train,
                prior_key: None,
                baseline: None,
                inner: None,
                test_subjects: None,
            },
        };
        let inputs = TaskInputs {
            dataset: path,
            prior_checkpoint: None,
            work_dir: dir.path().join("work"),
            device: "cpu".into(),
            files: vec![],
        };
        std::fs::create_dir_all(&inputs.work_dir).unwrap();
        let mut seen = Vec::new();
        let out = EngineTrainer::new()
            .run(
                &task,
                &inputs,
                &mut |p| seen.push(p),
                &AtomicBool::new(false),
            )
            .unwrap();
        assert!(matches!(out, TaskOutput::Target(_)));
        assert!(!seen.is_empty());
        for p in &seen {
            assert_eq!(
                (p.device.as_str(), p.gpu_memory_bytes),
                ("cpu", None),
                "{p:?}"
            );
        }
        let target: Vec<u32> = seen
            .iter()
            .filter(|p| p.stage == "target")
            .map(|p| p.epoch)
            .collect();
        assert_eq!(target, vec![0, 1], "{seen:?}");
        assert!(seen.iter().all(|p| p.stage != "target" || p.epochs == 2));
    }
}
