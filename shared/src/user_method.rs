//! A method of the researcher's own: any training command, run by a worker on the fold contract
//! (`docs/own-model.md`), defined in a spec by a `[methods.<name>]` table with a `command`. This module
//! holds what the spec says ([`UserMethodConfig`]), what one sweep point of it hands a task
//! ([`UserMethodTask`], part of the task key), and the names of the contract's files, which the worker
//! writes and checks and the Python helper reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Version of the fold contract: what a task folder holds and what a command must write back.
pub const CONTRACT_VERSION: &str = "mer-fold/1";
/// The task description in a task folder.
pub const TASK_FILE: &str = "task.json";
/// The training side of the fold.
pub const TRAIN_FILE: &str = "train.safetensors";
/// The test side of the fold, without labels.
pub const TEST_FILE: &str = "test.safetensors";
/// The command's final predictions (required).
pub const PREDICTIONS_FILE: &str = "predictions.csv";
/// The command's per-epoch test predictions (optional; only for the leakage diagnostics).
pub const EPOCH_PREDICTIONS_FILE: &str = "epoch_predictions.csv";
/// The prefix of a progress line on the command's stdout, followed by a JSON object.
pub const PROGRESS_PREFIX: &str = "MER-PROGRESS ";
/// Default of `timeout_minutes`.
pub const DEFAULT_TIMEOUT_MINUTES: u64 = 60;

/// A group of tensors a user method can receive (`inputs` in its table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserInput {
    /// The 10 key-frame flows MERSiamC3D reads (every prepared file holds them): f32 `[N, C, T, S, S]`.
    Flow,
    /// The onset->apex flow and its strain (`mer prep --apex-flow`): f32 `[N, 3, S, S]`.
    ApexFlow,
    /// TIM-10 gray face frames (`mer prep --tim10`): u8 `[N, 10, G, G]`.
    Tim10,
}

impl UserInput {
    /// The tensor's name in the prepared file and in the task folder's files.
    pub fn key(self) -> &'static str {
        match self {
            UserInput::Flow => "flow",
            UserInput::ApexFlow => "apex_flow",
            UserInput::Tim10 => "tim10",
        }
    }
}

fn default_inputs() -> Vec<UserInput> {
    vec![UserInput::Flow]
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MINUTES
}

/// A `[methods.<name>]` table with a `command`: a method the spec defines itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMethodConfig {
    /// The argv to run in the task's folder (no shell), e.g. `["python3", "my_net_fold.py"]`.
    pub command: Vec<String>,
    /// Files shipped with every task, relative to the spec's folder; they keep their relative path in
    /// the task folder. Their contents (sha256), not their paths or times, are part of the task key.
    #[serde(default)]
    pub files: Vec<String>,
    /// The prepared groups the command receives (default: `flow`).
    #[serde(default = "default_inputs")]
    pub inputs: Vec<UserInput>,
    /// A free table handed to the command in `task.json` (`params`).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Minutes a task may run before its process group is killed (an attempt that failed).
    #[serde(default = "default_timeout")]
    pub timeout_minutes: u64,
    /// Sweep axes over `params`: one point per combination (cartesian over keys, in key order), each
    /// value replacing or adding that param; labelled `key=value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<Value>>,
    /// The `files` with their sha256, once read (by the client from disk, by the coordinator from the
    /// submission); the planner refuses a user method whose files are not resolved.
    #[serde(skip)]
    pub shipped: Option<Vec<ShippedFile>>,
}

/// A file that travels with a user method's tasks: its path in the task folder and its content hash
/// (the artifact a worker fetches).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedFile {
    /// Path relative to the task folder (as written in `files`).
    pub path: String,
    /// sha256 hex of the bytes.
    pub sha256: String,
}

/// One sweep point of a user method: everything a worker needs to run it, and (but the timeout)
/// everything its task key covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMethodTask {
    /// The method's name (the key of its table).
    pub name: String,
    /// The argv.
    pub command: Vec<String>,
    /// The shipped files with their hashes.
    pub files: Vec<ShippedFile>,
    /// The groups the command receives.
    pub inputs: Vec<UserInput>,
    /// `params` with this point's sweep values applied.
    pub params: BTreeMap<String, Value>,
    /// Minutes before the command is killed.
    pub timeout_minutes: u64,
}

/// Whether `s` can name a method of the spec's own: an ASCII letter, then letters, digits, `_` or `-`
/// (it becomes a label, a file name and a table key).
pub fn is_method_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.len() <= 64
}

/// Whether `p` may name a file inside a task folder: relative, no `..`, no empty or `.` component, and
/// not one of the contract's own files.
pub fn is_safe_file_path(p: &str) -> bool {
    let reserved = [
        TASK_FILE,
        TRAIN_FILE,
        TEST_FILE,
        PREDICTIONS_FILE,
        EPOCH_PREDICTIONS_FILE,
    ];
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !reserved.contains(&p)
}

/// A JSON value as a sweep label shows it: strings bare, everything else as JSON.
pub fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl UserMethodConfig {
    /// The sweep's points: for each combination, the swept values (in key order) and the params with them
    /// applied. One point with no swept values when there is no sweep.
    pub fn points(&self) -> Vec<(BTreeMap<String, Value>, BTreeMap<String, Value>)> {
        let mut out = vec![(BTreeMap::new(), self.params.clone())];
        for (key, values) in &self.sweep {
            let mut next = Vec::with_capacity(out.len() * values.len());
            for (swept, params) in &out {
                for v in values {
                    let mut s = swept.clone();
                    s.insert(key.clone(), v.clone());
                    let mut p = params.clone();
                    p.insert(key.clone(), v.clone());
                    next.push((s, p));
                }
            }
            out = next;
        }
        out
    }

    /// The task settings of one point (`params` as [`Self::points`] gives them), or `None` while the
    /// files are not resolved.
    pub fn task(&self, name: &str, params: BTreeMap<String, Value>) -> Option<UserMethodTask> {
        Some(UserMethodTask {
            name: name.to_string(),
            command: self.command.clone(),
            files: self.shipped.clone()?,
            inputs: self.inputs.clone(),
            params,
            timeout_minutes: self.timeout_minutes,
        })
    }

    /// Checks the table; the error is the field (below `methods.<name>`) and a message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err((
                "command".into(),
                "command must name a program: an argv like [\"python3\", \"my_net_fold.py\"] (no shell)"
                    .into(),
            ));
        }
        if self.timeout_minutes == 0 {
            return Err((
                "timeout_minutes".into(),
                "timeout_minutes must be at least 1".into(),
            ));
        }
        if self.inputs.is_empty() {
            return Err((
                "inputs".into(),
                "inputs is empty: name at least one of flow, apex_flow, tim10".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if !seen.insert(*input) {
                return Err((
                    format!("inputs.{i}"),
                    format!("input '{}' is listed twice", input.key()),
                ));
            }
        }
        let mut paths = std::collections::BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            if !is_safe_file_path(f) {
                return Err((
                    format!("files.{i}"),
                    format!("'{f}' must be a path relative to the spec's folder, without '..', and not one of the contract's own files (task.json, train/test.safetensors, predictions.csv, epoch_predictions.csv)"),
                ));
            }
            if !paths.insert(f) {
                return Err((format!("files.{i}"), format!("'{f}' is listed twice")));
            }
        }
        for (key, values) in &self.sweep {
            if values.is_empty() {
                return Err((
                    format!("sweep.{key}"),
                    format!("sweep.{key} is empty; leave the axis out to use params.{key}"),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if values[..i].contains(v) {
                    return Err((
                        format!("sweep.{key}.{i}"),
                        format!("value {} is listed twice", label_value(v)),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl UserMethodTask {
    /// Checks a task's settings as a worker receives them; the error is the field and a message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let cfg = UserMethodConfig {
            command: self.command.clone(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            inputs: self.inputs.clone(),
            params: self.params.clone(),
            timeout_minutes: self.timeout_minutes,
            sweep: BTreeMap::new(),
            shipped: None,
        };
        cfg.validate()?;
        if let Some(f) = self
            .files
            .iter()
            .find(|f| f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err((
                "files".into(),
                format!("file '{}' has no valid sha256", f.path),
            ));
        }
        Ok(())
    }

    /// What the task key covers: everything but the timeout (which changes no result).
    pub fn key_value(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "command": self.command,
            "files": self.files,
            "inputs": self.inputs,
            "params": self.params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UserMethodConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_table_parses_with_defaults_and_rejects_unknown_fields() {
        let c = parse("command = [\"python3\", \"f.py\"]\n").unwrap();
        assert_eq!(c.inputs, vec![UserInput::Flow]);
        assert_eq!(c.timeout_minutes, DEFAULT_TIMEOUT_MINUTES);
        assert_eq!(c.validate(), Ok(()));
        let e = parse("command = [\"x\"]\nfile = [\"a\"]\n").unwrap_err();
        assert!(e.contains("file"), "{e}");
        let e = parse("command = [\"x\"]\ninputs = [\"optical\"]\n").unwrap_err();
        assert!(e.contains("apex_flow"), "{e}");
    }

    #[test]
    fn checks_name_the_field() {
        let c = parse("command = []\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "command");
        let c = parse("command = [\"x\"]\nfiles = [\"../a.py\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "files.0");
        let c = parse("command = [\"x\"]\nfiles = [\"a.py\", \"task.json\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "files.1");
        let c = parse("command = [\"x\"]\n[sweep]\nlr = []\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "sweep.lr");
        let c = parse("command = [\"x\"]\ntimeout_minutes = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "timeout_minutes");
        assert!(is_method_name("my_net-2"));
        assert!(!is_method_name("2net") && !is_method_name("a b") && !is_method_name(""));
    }

    #[test]
    fn the_sweep_is_cartesian_in_key_order_and_overrides_params() {
        let c = parse(
            "command = [\"x\"]\nparams = { lr = 0.1, epochs = 3 }\n[sweep]\nlr = [0.001, 0.0001]\nwd = [0, 1]\n",
        )
        .unwrap();
        let pts = c.points();
        assert_eq!(pts.len(), 4);
        let labels: Vec<String> = pts
            .iter()
            .map(|(s, _)| {
                s.iter()
                    .map(|(k, v)| format!("{k}={}", label_value(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            labels,
            [
                "lr=0.001,wd=0",
                "lr=0.001,wd=1",
                "lr=0.0001,wd=0",
                "lr=0.0001,wd=1"
            ]
        );
        assert_eq!(pts[0].1["lr"], serde_json::json!(0.001));
        assert_eq!(pts[0].1["epochs"], serde_json::json!(3));
        assert_eq!(parse("command = [\"x\"]\n").unwrap().points().len(), 1);
    }

    #[test]
    fn the_key_leaves_out_the_timeout_only() {
        let mut c = parse("command = [\"x\"]\n").unwrap();
        assert!(c.task("m", BTreeMap::new()).is_none(), "files not resolved");
        c.shipped = Some(vec![ShippedFile {
            path: "a.py".into(),
            sha256: "0".repeat(64),
        }]);
        let a = c.task("m", BTreeMap::new()).unwrap();
        let mut b = a.clone();
        b.timeout_minutes = 5;
        assert_eq!(a.key_value(), b.key_value());
        b.files[0].sha256 = "1".repeat(64);
        assert_ne!(a.key_value(), b.key_value());
        assert_eq!(a.validate(), Ok(()));
    }
}
