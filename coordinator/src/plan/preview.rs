//! What a spec will do before it runs (`mer plan`): its sweep points, folds and tasks per kind and
//! method, how many of them a run folder (or coordinator) already finished and would reuse, and, where
//! finished tasks of the same kind and method exist, an estimate of the worker time the rest needs.

use super::{Plan, TaskKind};
use crate::error::CoordError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The plan of the spec at `spec`, checked exactly as `mer run` and `mer submit` check it (same errors).
pub fn plan_of(spec: &Path) -> Result<Plan, CoordError> {
    let s = crate::spec::load_spec(spec)?;
    let datasets = super::load_datasets(&s)?;
    super::expand_multi(&s, &datasets)
}

/// Previews the spec at `spec` ([`plan_of`]) against the run folder `run_dir` (its `state/state.db`,
/// when there is one: what `mer run --run-dir` would reuse).
pub fn preview_spec(spec: &Path, run_dir: &Path) -> Result<Preview, CoordError> {
    let plan = plan_of(spec)?;
    let db = run_dir.join("state").join("state.db");
    if !db.is_file() {
        let state = format!("{} (no run there yet)", run_dir.display());
        return Ok(preview(&plan, &BTreeSet::new(), &BTreeMap::new(), &state));
    }
    let (seconds, plans) = crate::store::finished_task_seconds(&db)?;
    let finished: BTreeSet<String> = seconds.keys().cloned().collect();
    let means = mean_seconds(&seconds, &plans);
    Ok(preview(
        &plan,
        &finished,
        &means,
        &run_dir.display().to_string(),
    ))
}

/// One sweep point as `mer plan` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointPreview {
    /// Sweep point index.
    pub index: u32,
    /// Its label.
    pub label: String,
    /// Its method.
    pub method: String,
    /// Outer target tasks (one per fold).
    pub target_tasks: usize,
}

/// The tasks of one kind and method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskGroup {
    /// `prior` or `target` (`target (inner)` for nested selection's inner tasks).
    pub kind: String,
    /// The method.
    pub method: String,
    /// Tasks planned.
    pub tasks: usize,
    /// Of those, finished already (reused, not run again).
    pub reused: usize,
    /// Mean seconds of finished tasks of this kind and method in the state consulted (`None`: none).
    pub mean_seconds: Option<f64>,
    /// `mean_seconds` times the tasks left to run.
    pub estimated_seconds: Option<f64>,
}

/// What a spec will do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// Experiment name.
    pub experiment: String,
    /// Label scheme.
    pub scheme: String,
    /// `loso` or `lodo`.
    pub protocol: String,
    /// Dataset parts.
    pub parts: Vec<String>,
    /// Folds.
    pub folds: usize,
    /// How many folds the data has, when the spec's `folds` chose a subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds_of_data: Option<usize>,
    /// Sweep points.
    pub sweep_points: Vec<PointPreview>,
    /// Tasks per kind and method.
    pub groups: Vec<TaskGroup>,
    /// Every task.
    pub tasks: usize,
    /// Tasks already finished.
    pub reused: usize,
    /// Tasks left to run.
    pub to_run: usize,
    /// Sum of the groups' estimates, when every group with tasks left has one.
    pub estimated_worker_seconds: Option<f64>,
    /// Where the reuse count comes from (a run folder's state, a coordinator, or nothing).
    pub state: String,
    /// Combinations of the sweep dropped, with the reason.
    pub skipped: Vec<String>,
}

/// Each task key's (kind, method) in `plan`.
fn kinds(plan: &Plan) -> BTreeMap<&str, (String, String)> {
    plan.tasks
        .iter()
        .map(|t| {
            let kind = match (t.kind, t.is_inner()) {
                (TaskKind::Prior, _) => "prior".to_string(),
                (TaskKind::Target, false) => "target".to_string(),
                (TaskKind::Target, true) => "target (inner)".to_string(),
            };
            (t.key.as_str(), (kind, t.payload.method().key().to_string()))
        })
        .collect()
}

/// Mean seconds per (kind, method) of the finished tasks in `seconds` (key -> seconds), their kind and
/// method read from the stored plans `plans` (JSON; unreadable ones are skipped).
pub fn mean_seconds(
    seconds: &BTreeMap<String, f64>,
    plans: &[String],
) -> BTreeMap<(String, String), f64> {
    let mut acc: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for text in plans {
        let Ok(p) = serde_json::from_str::<Plan>(text) else {
            continue;
        };
        for (key, group) in kinds(&p) {
            if let Some(s) = seconds.get(key).filter(|s| **s > 0.0) {
                if seen.insert(key.to_string()) {
                    let e = acc.entry(group).or_insert((0.0, 0));
                    e.0 += s;
                    e.1 += 1;
                }
            }
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// The preview of `plan` against the finished task keys `finished` and the mean times `means`
/// ([`mean_seconds`]); `state` says where they come from.
pub fn preview(
    plan: &Plan,
    finished: &BTreeSet<String>,
    means: &BTreeMap<(String, String), f64>,
    state: &str,
) -> Preview {
    let mut groups: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for (key, group) in kinds(plan) {
        let e = groups.entry(group).or_insert((0, 0));
        e.0 += 1;
        e.1 += usize::from(finished.contains(key));
    }
    let groups: Vec<TaskGroup> = groups
        .into_iter()
        .map(|((kind, method), (tasks, reused))| {
            let mean = means.get(&(kind.clone(), method.clone())).copied();
            TaskGroup {
                estimated_seconds: mean.map(|m| m * (tasks - reused) as f64),
                kind,
                method,
                tasks,
                reused,
                mean_seconds: mean,
            }
        })
        .collect();
    let reused: usize = groups.iter().map(|g| g.reused).sum();
    let estimated_worker_seconds = groups
        .iter()
        .filter(|g| g.tasks > g.reused)
        .map(|g| g.estimated_seconds)
        .sum::<Option<f64>>();
    Preview {
        experiment: plan.experiment.clone(),
        scheme: plan.scheme.key().to_string(),
        protocol: plan.protocol.key().to_string(),
        parts: plan.parts.iter().map(|p| p.key().to_string()).collect(),
        folds: plan.folds.len(),
        folds_of_data: plan.folds_of_data,
        sweep_points: plan
            .sweep_points
            .iter()
            .map(|sp| PointPreview {
                index: sp.index,
                label: sp.label.clone(),
                method: sp.method.key().to_string(),
                target_tasks: plan.targets_of(sp.index).count(),
            })
            .collect(),
        groups,
        tasks: plan.tasks.len(),
        reused,
        to_run: plan.tasks.len() - reused,
        estimated_worker_seconds,
        state: state.to_string(),
        skipped: plan.skipped.clone(),
    }
}

/// Seconds as `1 h 02 min`, `3 min 05 s` or `12 s`.
fn duration(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "experiment {}: scheme {}, {} over parts {}: {} folds{}",
            self.experiment,
            self.scheme,
            self.protocol.to_ascii_uppercase(),
            self.parts.join(", "),
            self.folds,
            match self.folds_of_data {
                Some(n) => format!(" (the spec's `folds`, of the data's {n})"),
                None => String::new(),
            }
        )?;
        writeln!(f, "{} sweep point(s):", self.sweep_points.len())?;
        for p in &self.sweep_points {
            writeln!(
                f,
                "  [{}] {} ({}, {} target tasks)",
                p.index, p.label, p.method, p.target_tasks
            )?;
        }
        writeln!(
            f,
            "{} tasks: {} finished in {} (reused), {} to run",
            self.tasks, self.reused, self.state, self.to_run
        )?;
        writeln!(
            f,
            "  {:<16} {:<20} {:>6} {:>7} {:>8}  estimate",
            "kind", "method", "tasks", "reused", "to run"
        )?;
        for g in &self.groups {
            let est = match (g.mean_seconds, g.estimated_seconds) {
                (Some(m), Some(e)) => format!("{} ({} each)", duration(e), duration(m)),
                _ if g.tasks == g.reused => "-".to_string(),
                _ => "no finished task of this kind yet".to_string(),
            };
            writeln!(
                f,
                "  {:<16} {:<20} {:>6} {:>7} {:>8}  {est}",
                g.kind,
                g.method,
                g.tasks,
                g.reused,
                g.tasks - g.reused
            )?;
        }
        match self.estimated_worker_seconds {
            Some(s) if self.to_run > 0 => writeln!(
                f,
                "estimated worker time left: {} (divide by the workers running in parallel)",
                duration(s)
            )?,
            _ => {}
        }
        for s in &self.skipped {
            writeln!(f, "skipped: {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
    }
}
