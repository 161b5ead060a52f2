//! The task contract between the coordinator and its workers: what a task is (its kind), what a worker is
//! told to run (the payload, sent as JSON with the lease), what it reports while running (progress), and
//! the descriptor of a prepared dataset that clients send with a submission. Both sides build on these
//! definitions and nothing else, so a field added here is a field both understand.

use crate::loso::HeldOut;
use crate::method::{BaselineSettings, Method};
use crate::prepared::{PrepInfo, SampleMeta};
use crate::train_config::TrainConfig;
use crate::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the task-key format and of the meaning of task payloads. Bump it when a change in the
/// training code or in the key makes old results invalid: every key changes and nothing stale is reused.
pub const TASK_KEY_VERSION: &str = "mer-task/1";

/// The two stages of a fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Siamese prior learning on the fold's training subjects; produces a checkpoint.
    Prior,
    /// Target learning (from the prior checkpoint, or from scratch) and testing on the held-out subject;
    /// for a baseline method, its whole training and testing on the fold.
    Target,
}

impl std::str::FromStr for TaskKind {
    type Err = String;
    /// `prior` or `target`; anything else is an error (a worker must not run an unknown kind as a target).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prior" => Ok(TaskKind::Prior),
            "target" => Ok(TaskKind::Target),
            other => Err(format!(
                "unknown task kind '{other}' (this worker runs `prior` and `target` tasks)"
            )),
        }
    }
}

impl TaskKind {
    /// `prior` or `target`.
    pub fn key(self) -> &'static str {
        match self {
            TaskKind::Prior => "prior",
            TaskKind::Target => "target",
        }
    }
}

/// What a worker needs to run a task (sent as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPayload {
    /// sha256 hex of the prepared file (the artifact to fetch).
    pub dataset_hash: String,
    /// Label scheme.
    pub scheme: LabelScheme,
    /// Dataset parts the fold trains and tests on (sorted).
    pub parts: Vec<Dataset>,
    /// The held-out subject, `dataset/subject` (e.g. `casme2/sub01`): never trained on, in either stage.
    pub test_subject: String,
    /// The resolved training settings; `train.seed` is this task's own derived seed.
    pub train: TrainConfig,
    /// Key of the prior task whose checkpoint initialises target learning (`None`: from scratch).
    pub prior_key: Option<String>,
    /// A baseline method's resolved settings (`None`: MERSiamC3D, trained with `train`). A baseline task
    /// uses only `train.device`, `train.threads` and `train.seed` of `train`. Absent from MERSiamC3D
    /// payloads, so their JSON (and task keys) are what they were before methods existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSettings>,
    /// Nested selection's inner split (`None`: an ordinary LOSO task). With it, the task tests on the inner
    /// split's subjects, trains on the rest of the fold's training subjects, and never sees `test_subject`,
    /// the outer fold's. Absent from LOSO payloads, so their JSON and keys are unchanged; a worker built
    /// before nested selection rejects such a payload (unknown field) instead of training on the wrong set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<InnerSplit>,
    /// Leave one dataset out (`protocol = "lodo"`): every subject (`dataset/subject`) of the held-out part,
    /// all tested on, none trained on; `test_subject` is then the part itself (`casme2`). Absent from LOSO
    /// payloads, so their JSON and keys are unchanged, and an older worker rejects a LODO payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subjects: Option<Vec<String>>,
}

/// One inner split of an outer fold (nested selection, `[selection] mode = "nested"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerSplit {
    /// 0-based index among the outer fold's inner splits.
    pub index: u32,
    /// How many inner splits the outer fold has (`inner_folds`).
    pub of: u32,
    /// The inner test subjects (`dataset/subject`), in fold order.
    pub test_subjects: Vec<String>,
}

impl TaskPayload {
    /// The method this task runs.
    pub fn method(&self) -> Method {
        self.baseline
            .as_ref()
            .map_or(Method::Mersiamc3d, BaselineSettings::method)
    }

    /// Which subjects the task tests on and which it must not train on ([`HeldOut`]).
    pub fn held_out(&self) -> HeldOut {
        match &self.inner {
            None => match &self.test_subjects {
                None => HeldOut::subject(&self.test_subject),
                Some(subjects) => HeldOut {
                    fold: self.test_subject.clone(),
                    test: subjects.clone(),
                    excluded: vec![],
                },
            },
            Some(inner) => HeldOut {
                fold: self.test_subject.clone(),
                test: inner.test_subjects.clone(),
                excluded: vec![self.test_subject.clone()],
            },
        }
    }
}

/// The latest progress a worker reported for a lease (also the dashboard's JSON of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// `prior`, `target`, `test`, `download`...
    pub stage: String,
    /// Current epoch (0-based).
    pub epoch: u32,
    /// Epochs of the stage.
    pub epochs: u32,
    /// Latest mean loss.
    pub loss: f64,
    /// Training throughput.
    pub samples_per_s: f64,
    /// The device the task trains on (`cpu`, `cuda:0`...), empty when unknown.
    pub device: String,
    /// Memory in use on that device (the whole device, as the CUDA driver reports it), `None` on CPU.
    pub gpu_memory_bytes: Option<u64>,
}

/// What the planner needs of a prepared file: its content hash and metadata (never the flow tensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// sha256 hex of the file's bytes.
    pub hash: String,
    /// Where it lies.
    pub path: PathBuf,
    /// How it was made.
    pub info: PrepInfo,
    /// Every sample's metadata.
    pub samples: Vec<SampleMeta>,
}

/// A prepared dataset as a client describes it to the coordinator when it submits a spec (the summary
/// under the spec's key-frame tag; the file itself travels as an artifact named by its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireDataset {
    /// Key-frame tag (the key of the spec's `[datasets]`, or the file's own key-frame method).
    pub tag: String,
    /// Hash, path, preparation and samples.
    #[serde(flatten)]
    pub dataset: DatasetSummary,
}

impl WireDataset {
    /// The descriptors of a spec's datasets, keyed by tag as the planner loads them.
    pub fn from_summaries(ds: &std::collections::BTreeMap<String, DatasetSummary>) -> Vec<Self> {
        ds.iter()
            .map(|(tag, d)| WireDataset {
                tag: tag.clone(),
                dataset: d.clone(),
            })
            .collect()
    }
}

/// One task as a worker's trainer sees it: what a lease carries (and what a direct run of a plan, without
/// a coordinator, builds for attempt 1).
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The task key (content hash).
    pub key: String,
    /// Prior or target.
    pub kind: TaskKind,
    /// The fold, `dataset/subject`.
    pub fold: String,
    /// Sweep point of a target task.
    pub sweep_point: Option<u32>,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// What to train.
    pub payload: TaskPayload,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_dataset_keeps_its_flat_json_form() {
        let d = WireDataset {
            tag: "adaptive".into(),
            dataset: DatasetSummary {
                hash: "h".into(),
                path: "a.safetensors".into(),
                info: crate::fixtures::prep_info("i", 4, 10),
                samples: vec![],
            },
        };
        let v = serde_json::to_value(&d).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["hash", "info", "path", "samples", "tag"]);
        assert_eq!(serde_json::from_value::<WireDataset>(v).unwrap(), d);
        assert_eq!(TaskKind::Prior.key(), "prior");
        assert_eq!("target".parse::<TaskKind>(), Ok(TaskKind::Target));
        assert!("evaluate"
            .parse::<TaskKind>()
            .unwrap_err()
            .contains("evaluate"));
        assert_eq!(
            serde_json::to_string(&TaskKind::Target).unwrap(),
            "\"target\""
        );
    }
}
