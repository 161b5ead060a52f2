//! The task graph's state machine: adding an experiment's tasks (reusing stored results, linking
//! dependencies), queueing ready tasks, finishing a task (which unblocks its dependents) and giving one
//! up (with everything that depends on it). These run under the scheduler's lock and touch no I/O.

use super::{Experiment, Inner, Task};
use crate::plan::{Plan, TaskKind};
use crate::store::{ExpState, StoredTaskState};
use crate::task_state::TaskState;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(super) fn bump(e: &Experiment) {
    e.version.send_modify(|v| *v += 1);
}

/// Puts a ready task into the queues of its running experiments.
pub(super) fn enqueue(inner: &mut Inner, t: usize, front: bool) {
    let kind = inner.tasks[t].def.kind;
    for &x in &inner.tasks[t].exps {
        let e = &mut inner.exps[x];
        if e.state != ExpState::Running {
            continue;
        }
        let q = if kind == TaskKind::Prior {
            &mut e.ready_prior
        } else {
            &mut e.ready_target
        };
        if front {
            q.push_front(t);
        } else {
            q.push_back(t);
        }
    }
}

pub(super) fn update_exp_state(e: &mut Experiment) {
    if e.state == ExpState::Running && (e.done + e.gave_up) as usize == e.tasks.len() {
        e.state = if e.gave_up == 0 {
            ExpState::Done
        } else {
            ExpState::Failed
        };
        bump(e);
    }
}

/// Marks a task done or given up, updates its experiments and unblocks (or gives up) its dependents.
/// Returns the ids of experiments whose state changed.
pub(super) fn finish_task(inner: &mut Inner, t: usize, state: TaskState) -> Vec<String> {
    inner.tasks[t].state = state;
    inner.tasks[t].lease = None;
    let mut changed = Vec::new();
    for x in inner.tasks[t].exps.clone() {
        let e = &mut inner.exps[x];
        if state == TaskState::Done {
            e.done += 1;
        } else {
            e.gave_up += 1;
        }
        bump(e);
        let before = e.state;
        update_exp_state(e);
        if before != e.state {
            changed.push(e.id.clone());
        }
    }
    if state == TaskState::Done {
        for d in inner.tasks[t].dependents.clone() {
            let dt = &mut inner.tasks[d];
            if dt.state == TaskState::Blocked {
                dt.deps_left = dt.deps_left.saturating_sub(1);
                if dt.deps_left == 0 {
                    dt.state = TaskState::Ready;
                    enqueue(inner, d, false);
                }
            }
        }
    }
    changed
}

/// Gives up a task and, transitively, every task that depends on it.
pub(super) fn give_up_task(inner: &mut Inner, t: usize, keys: &mut Vec<String>) -> Vec<String> {
    if let Some(old) = inner.tasks[t].lease.take() {
        if let Some(l) = inner.leases.take(&old) {
            for x in l.exps {
                inner.exps[x].running = inner.exps[x].running.saturating_sub(1);
            }
        }
    }
    keys.push(inner.tasks[t].def.key.clone());
    let mut changed = finish_task(inner, t, TaskState::GaveUp);
    let key = inner.tasks[t].def.key.clone();
    for d in inner.tasks[t].dependents.clone() {
        if matches!(inner.tasks[d].state, TaskState::Blocked | TaskState::Ready) {
            inner.tasks[d]
                .errors
                .push(format!("dependency {key} gave up"));
            changed.extend(give_up_task(inner, d, keys));
        }
    }
    changed
}

/// An experiment about to enter the in-memory graph (a new submission, or one restored from the store).
pub(super) struct NewExpEntry<'a> {
    /// Experiment id.
    pub id: &'a str,
    /// Name from the spec.
    pub name: &'a str,
    /// Spec hash + dataset hashes.
    pub identity: &'a str,
    /// The expanded plan.
    pub plan: Arc<Plan>,
    /// Attempts per task before it gives up.
    pub max_attempts: u32,
    /// Lease length of its tasks.
    pub ttl: Duration,
    /// Its state (`Running` for a new submission; as stored on restore).
    pub state: ExpState,
    /// Stored results by task key, with the checkpoint hash of prior results: these tasks are done.
    pub done: &'a HashMap<String, Option<String>>,
    /// Stored task rows by key (counters, errors, given up); empty for a new submission.
    pub rows: &'a HashMap<String, crate::store::StoredTask>,
}

/// Adds an experiment to the in-memory state; returns its index.
pub(super) fn add_locked(inner: &mut Inner, x: NewExpEntry<'_>) -> usize {
    let NewExpEntry {
        id,
        name,
        identity,
        plan,
        max_attempts,
        ttl,
        state,
        done,
        rows,
    } = x;
    let xi = inner.exps.len();
    let (version, _) = watch::channel(0u64);
    inner.exps.push(Experiment {
        id: id.to_string(),
        name: name.to_string(),
        identity: identity.to_string(),
        plan: plan.clone(),
        tasks: Vec::with_capacity(plan.tasks.len()),
        state,
        ready_prior: VecDeque::new(),
        ready_target: VecDeque::new(),
        running: 0,
        done: 0,
        gave_up: 0,
        version,
        durations: HashMap::new(),
        launcher: Vec::new(),
    });
    inner.exp_by_id.insert(id.to_string(), xi);
    for def in &plan.tasks {
        let t = if let Some(&t) = inner.by_key.get(def.key.as_str()) {
            if !inner.tasks[t].exps.contains(&xi) {
                inner.tasks[t].exps.push(xi);
            }
            t
        } else {
            let t = inner.tasks.len();
            let row = rows.get(&def.key);
            let payload_json: Arc<str> = serde_json::to_string(&def.payload)
                .unwrap_or_default()
                .into();
            let mut task = Task {
                def: Arc::new(def.clone()),
                payload_json,
                state: TaskState::Blocked,
                deps_left: 0,
                dependents: Vec::new(),
                exps: vec![xi],
                lease: None,
                attempts: row.map_or(0, |r| r.attempts),
                failures: row.map_or(0, |r| r.failures),
                lost: row.map_or(0, |r| r.lost),
                duplicates: row.map_or(0, |r| r.duplicates),
                errors: row.map(|r| r.errors.clone()).unwrap_or_default(),
                checkpoint: None,
                ttl,
                max_attempts: max_attempts.max(1),
            };
            let mut dep_gave_up = false;
            let mut deps_left = 0;
            for d in &def.deps {
                if let Some(&di) = inner.by_key.get(d.as_str()) {
                    inner.tasks[di].dependents.push(t);
                    match inner.tasks[di].state {
                        TaskState::Done => {}
                        TaskState::GaveUp => dep_gave_up = true,
                        _ => deps_left += 1,
                    }
                }
            }
            task.deps_left = deps_left;
            if let Some(cp) = done.get(&def.key) {
                task.state = TaskState::Done;
                task.checkpoint = cp.clone();
                inner.executions_reused += 1;
            } else if row.is_some_and(|r| r.state == StoredTaskState::GaveUp) || dep_gave_up {
                task.state = TaskState::GaveUp;
            } else if deps_left == 0 {
                task.state = TaskState::Ready;
            }
            inner.tasks.push(task);
            inner.by_key.insert(Arc::from(def.key.as_str()), t);
            t
        };
        inner.exps[xi].tasks.push(t);
        let e = &mut inner.exps[xi];
        match inner.tasks[t].state {
            TaskState::Done => e.done += 1,
            TaskState::GaveUp => e.gave_up += 1,
            TaskState::Ready if state == ExpState::Running => {
                if inner.tasks[t].def.kind == TaskKind::Prior {
                    e.ready_prior.push_back(t);
                } else {
                    e.ready_target.push_back(t);
                }
            }
            _ => {}
        }
    }
    xi
}
