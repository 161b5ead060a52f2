//! The contract between the worker agent and whatever trains: the task as the trainer sees it, its local
//! inputs, its output and its failure, and the [`Trainer`] trait itself. The agent ([`crate::agent`]) is
//! generic over it; `mer worker` plugs in the libtorch engine ([`crate::engine_trainer`]), tests and
//! benchmarks the deterministic simulation ([`crate::agent::sim::SimTrainer`]).

use mer_shared::fold::FoldResult;
pub use mer_shared::task::{Progress, TaskSpec};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Local files a task needs.
#[derive(Debug, Clone)]
pub struct TaskInputs {
    /// The prepared dataset (safetensors).
    pub dataset: PathBuf,
    /// The prior-learning checkpoint (target tasks with prior learning).
    pub prior_checkpoint: Option<PathBuf>,
    /// A private, empty scratch folder for this task (write the prior checkpoint here); it belongs to
    /// the worker slot and is emptied before the slot's next task.
    pub work_dir: PathBuf,
    /// The device the task trains on (`cpu`, `cuda:0`...): the slot's own, or for a gang lease the
    /// devices the coordinator granted, comma-separated (`cuda:0,cuda:1`; `cpu,cpu` for CPU replicas).
    pub device: String,
    /// A user method's shipped files: each one's path in the task folder and a local, hash-checked copy
    /// (empty for every other task).
    pub files: Vec<(String, PathBuf)>,
}

/// What a task produced.
#[derive(Debug, Clone)]
pub enum TaskOutput {
    /// A target task's fold result.
    Target(FoldResult),
    /// A prior task's checkpoint file (uploaded as an artifact by the agent).
    Prior {
        /// The checkpoint file.
        checkpoint: PathBuf,
    },
}

/// A failed task.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TrainerError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed (false: bad input, gives up at once).
    pub retryable: bool,
}

impl TrainerError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        TrainerError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry will fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        TrainerError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Runs tasks. `run` may block for a long time (it is called on a blocking thread); it should call
/// `progress` now and then (each epoch) and stop early, with any error, when `cancel` becomes true.
pub trait Trainer: Send + Sync + 'static {
    /// Runs one task.
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError>;
}
