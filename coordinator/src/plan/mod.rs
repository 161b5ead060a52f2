//! Expansion of a spec into a task graph: one prior-learning task per LOSO fold (and base seed), then one
//! target task per (fold, sweep point) that depends on it.
//!
//! A task's key is the sha256 of a canonical JSON of everything that determines its result and nothing
//! else (not the experiment's name, not the device or thread count): two experiments that share a fold and
//! a sweep point share the task, so a finished result is reused across experiments and restarts.

//!
//! The module is split by concern: `datasets` (prepared-file summaries the planner reads), `keys` (task
//! keys and seeds), `expand` (the expansion itself, in named phases), `graph` (the tasks of a fold and
//! sweep point, priors shared), `nested` (the inner tasks of nested selection), `preview` (what a plan
//! will run and reuse: `mer plan`).

mod datasets;
mod expand;
mod graph;
mod keys;
mod nested;
pub mod preview;
#[cfg(test)]
pub(crate) mod tests;

pub use datasets::{dataset_summary, load_datasets, preflight};
pub use expand::{expand, expand_multi, plan_spec};
pub use keys::{derive_seed, prior_key, target_key};
use mer_shared::loso::FoldId;
pub use mer_shared::task::{DatasetSummary, InnerSplit, TaskKind, TaskPayload, TASK_KEY_VERSION};

use mer_shared::method::{BaselineSettings, Method};
use mer_shared::train_config::TrainConfig;
use mer_shared::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One node of the task graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    /// sha256 hex of everything that determines the result (see the module docs).
    pub key: String,
    /// Prior or target.
    pub kind: TaskKind,
    /// The fold, `dataset/subject`.
    pub fold: String,
    /// Sweep point index (target tasks), `None` for prior tasks (shared by several sweep points).
    pub sweep_point: Option<u32>,
    /// Keys of the tasks that must finish first.
    pub deps: Vec<String>,
    /// What the worker runs.
    pub payload: TaskPayload,
}

impl TaskDef {
    /// True for an inner task of nested selection (trained and tested inside the outer fold's training
    /// subjects; its result chooses a point and is never pooled into a score).
    pub fn is_inner(&self) -> bool {
        self.payload.inner.is_some()
    }
}

/// What nested selection plans: its settings, the points it chooses between and the inner splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionPlan {
    /// Inner splits per outer fold.
    pub inner_folds: usize,
    /// Seed of the inner splits' subject shuffle.
    pub seed: u64,
    /// Per method with at least two sweep points, the points it chooses between (a method with one point
    /// has nothing to choose: its selected result is its clean one, and it gets no inner tasks).
    pub candidates: Vec<Candidates>,
    /// Per outer fold (`dataset/subject`), its inner splits' test subjects.
    pub splits: BTreeMap<String, Vec<Vec<String>>>,
}

/// The sweep points one method chooses between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// The method.
    pub method: Method,
    /// Its sweep point indices, in plan order (the tie rule prefers the earlier).
    pub points: Vec<u32>,
}

/// One point of the sweep's cartesian product (after collapsing duplicates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// 0-based index in the plan.
    pub index: u32,
    /// Human-readable, file-name-safe label of the swept values, e.g. `alpha=2,frozen=1` (`default` when
    /// nothing is swept).
    pub label: String,
    /// The swept axes' values (`method`, `variant`, `loss`, `alpha`, `prior`, `frozen_layers`, `keyframes`,
    /// `seed`); an axis irrelevant for this point (alpha under cross-entropy, any MERSiamC3D axis for a
    /// baseline) is left out.
    pub values: BTreeMap<String, Value>,
    /// The recognition method.
    #[serde(default)]
    pub method: Method,
    /// A baseline's resolved settings (`None` for MERSiamC3D, whose settings are `train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSettings>,
    /// Key-frame tag of the point's dataset.
    pub keyframes: String,
    /// sha256 of the point's prepared file.
    pub dataset_hash: String,
    /// The resolved training settings before the per-fold seed derivation (`seed` = the base seed).
    pub train: TrainConfig,
}

/// The expanded experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Experiment name.
    pub experiment: String,
    /// Hash of the spec ([`ExperimentSpec::spec_hash`]).
    pub spec_hash: String,
    /// Label scheme.
    pub scheme: LabelScheme,
    /// Parts included (sorted).
    pub parts: Vec<Dataset>,
    /// The evaluation protocol (plans stored before LODO existed read as LOSO).
    #[serde(default)]
    pub protocol: crate::spec::Protocol,
    /// Sweep points.
    pub sweep_points: Vec<SweepPoint>,
    /// Every task: prior tasks first, then target tasks by sweep point and fold.
    pub tasks: Vec<TaskDef>,
    /// LOSO folds in [`FoldId`] order (the union over the datasets used).
    pub folds: Vec<FoldId>,
    /// How many folds the data has, when the spec's `folds` chose a subset of them (`None`: every fold runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds_of_data: Option<usize>,
    /// Prepared files by hash (what workers download).
    pub datasets: BTreeMap<String, PathBuf>,
    /// Combinations of the cartesian product that were dropped, with the reason.
    pub skipped: Vec<String>,
    /// Nested selection (`None` without `[selection] mode = "nested"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionPlan>,
}

impl Plan {
    /// The (outer) target tasks of one sweep point: one per LOSO fold, the ones its scores pool.
    pub fn targets_of(&self, point: u32) -> impl Iterator<Item = &TaskDef> {
        self.tasks.iter().filter(move |t| {
            t.kind == TaskKind::Target && t.sweep_point == Some(point) && !t.is_inner()
        })
    }

    /// The inner target tasks of one sweep point (nested selection), every outer fold's.
    pub fn inner_targets_of(&self, point: u32) -> impl Iterator<Item = &TaskDef> {
        self.tasks.iter().filter(move |t| {
            t.kind == TaskKind::Target && t.sweep_point == Some(point) && t.is_inner()
        })
    }

    /// A sweep point's label (its index where the plan has no such point).
    pub fn point_label(&self, index: u32) -> String {
        self.sweep_points
            .iter()
            .find(|p| p.index == index)
            .map_or_else(|| index.to_string(), |p| p.label.clone())
    }

    /// Every task as a worker would receive it on its first attempt, in plan order (prior tasks before the
    /// target tasks that need them): what a direct run without a coordinator executes.
    pub fn task_specs(&self) -> Vec<mer_shared::task::TaskSpec> {
        self.tasks
            .iter()
            .map(|t| mer_shared::task::TaskSpec {
                key: t.key.clone(),
                kind: t.kind,
                fold: t.fold.clone(),
                sweep_point: t.sweep_point,
                attempt: 1,
                payload: t.payload.clone(),
            })
            .collect()
    }

    /// A task by key.
    pub fn task(&self, key: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// A human-readable overview (for a dry run): folds, sweep points, task counts, skipped combinations.
    pub fn describe(&self) -> String {
        let priors = self
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Prior)
            .count();
        let targets = self.tasks.len() - priors;
        let inner = self.tasks.iter().filter(|t| t.is_inner()).count();
        let parts: Vec<&str> = self.parts.iter().map(|p| p.key()).collect();
        let mut out = format!(
            "experiment {}: scheme {}, parts {}, {} {} folds\n{} sweep point(s), {} tasks ({} prior, {} target)\n",
            self.experiment,
            self.scheme,
            parts.join(","),
            self.folds.len(),
            self.protocol.key().to_ascii_uppercase(),
            self.sweep_points.len(),
            self.tasks.len(),
            priors,
            targets
        );
        for sp in &self.sweep_points {
            let n = self.targets_of(sp.index).count();
            out += &format!(
                "  [{}] {} ({} target tasks, key-frames {})\n",
                sp.index, sp.label, n, sp.keyframes
            );
        }
        if let Some(sel) = &self.selection {
            out += &format!(
                "nested selection: {} inner splits per outer fold (seed {}), {} of the tasks inner\n",
                sel.inner_folds, sel.seed, inner
            );
            for c in &sel.candidates {
                let labels: Vec<String> = c.points.iter().map(|i| self.point_label(*i)).collect();
                out += &format!("  {} chooses between {}\n", c.method, labels.join(", "));
            }
        }
        for s in &self.skipped {
            out += &format!("  skipped: {s}\n");
        }
        out
    }
}

/// Keeps a label usable as a file name: letters, digits and `=,._-` stay, anything else becomes `_`.
pub fn safe_label(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=,._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
