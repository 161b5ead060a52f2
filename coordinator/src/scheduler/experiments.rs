//! Experiments entering and leaving the graph: submission (idempotent by identity), retrying a failed
//! experiment's given-up tasks, cancellation, and recording an experiment that ended.

use super::graph::{add_locked, bump, enqueue, update_exp_state, NewExpEntry};
use super::{Scheduler, Submission, Submitted};
use crate::error::CoordError;
use crate::store::{ExpState, NewExperiment};
use crate::task_state::TaskState;
use std::collections::HashMap;
use std::sync::Arc;

impl Scheduler {
    /// Finds a live (not cancelled) experiment with this identity.
    pub fn find_identity(&self, identity: &str) -> Option<String> {
        let inner = self.inner.lock();
        inner
            .exps
            .iter()
            .rev()
            .find(|e| e.identity == identity && e.state != ExpState::Cancelled)
            .map(|e| e.id.clone())
    }

    /// Adds an experiment (durably) and queues its ready tasks. Re-submitting an identical experiment
    /// (same `identity`) returns the existing one; if that one ended `failed`, its given-up tasks are
    /// queued again first (see [`Scheduler::retry_given_up`]).
    pub async fn submit(&self, sub: Submission) -> Result<Submitted, CoordError> {
        let Submission {
            name,
            identity,
            spec_hash,
            spec_toml,
            plan,
            max_attempts,
            lease,
        } = sub;
        if let Some(id) = self.find_identity(&identity) {
            let retried = self.retry_given_up(&id).await?;
            let inner = self.inner.lock();
            let e = &inner.exps[inner.exp_by_id[&id]];
            return Ok(Submitted {
                id,
                tasks: e.tasks.len(),
                reused: e.done as usize,
                existing: true,
                retried,
            });
        }
        let plan_json = serde_json::to_string(&plan).map_err(|e| CoordError::json("plan", e))?;
        let (id, seq) = {
            let mut inner = self.inner.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let short = &identity[..identity.len().min(8)];
            let mut id = format!("{name}-{short}");
            if inner.exp_by_id.contains_key(&id) {
                id = format!("{name}-{short}-{seq}");
            }
            (id, seq)
        };
        let rec = NewExperiment {
            id: id.clone(),
            seq,
            name: name.to_string(),
            spec_hash: spec_hash.to_string(),
            identity: identity.to_string(),
            spec_toml: spec_toml.to_string(),
            plan_json,
            max_attempts,
            lease_ms: lease.as_millis() as u64,
            task_keys: plan.tasks.iter().map(|t| t.key.clone()).collect(),
        };
        self.store
            .write(move |tx| tx.insert_experiment(&rec))
            .await?;
        // Results stored under these keys (by earlier runs or other experiments) are reused.
        let keys: Vec<String> = plan.tasks.iter().map(|t| t.key.clone()).collect();
        let done: HashMap<String, Option<String>> = self.store.checkpoints_of(keys).await?;
        let ttl = self.cfg.lease_ttl.unwrap_or(lease);
        let ntasks = plan.tasks.len();
        let (reused, changed) = {
            let mut inner = self.inner.lock();
            let idx = add_locked(
                &mut inner,
                NewExpEntry {
                    id: &id,
                    name: &name,
                    identity: &identity,
                    plan: Arc::new(plan),
                    max_attempts,
                    ttl,
                    state: ExpState::Running,
                    done: &done,
                    rows: &HashMap::new(),
                },
            );
            let e = &mut inner.exps[idx];
            let reused = e.done as usize;
            update_exp_state(e);
            (reused, e.state != ExpState::Running)
        };
        if changed {
            self.on_exp_changed_state(&id);
        }
        self.notify.notify_waiters();
        Ok(Submitted {
            id,
            tasks: ntasks,
            reused,
            existing: false,
            retried: 0,
        })
    }

    /// Queues the given-up tasks of a `failed` experiment again, with fresh failure and loss budgets
    /// (their error history is kept), and sets it (and any other failed experiment waiting on the same
    /// tasks) running again. Results already stored are untouched. Returns how many tasks went back;
    /// 0 for an experiment that is not `failed`.
    pub async fn retry_given_up(&self, id: &str) -> Result<usize, CoordError> {
        let (keys, exp_ids) = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let Some(&xi) = inner.exp_by_id.get(id) else {
                return Err(CoordError::NotFound(format!("experiment {id}")));
            };
            if inner.exps[xi].state != ExpState::Failed {
                return Ok(0);
            }
            let reset: Vec<usize> = inner.exps[xi]
                .tasks
                .iter()
                .copied()
                .filter(|&t| inner.tasks[t].state == TaskState::GaveUp)
                .collect();
            let mut touched = std::collections::BTreeSet::new();
            for &t in &reset {
                let task = &mut inner.tasks[t];
                task.state = TaskState::Blocked;
                task.failures = 0;
                task.lost = 0;
                for &x in &task.exps {
                    let e = &mut inner.exps[x];
                    e.gave_up = e.gave_up.saturating_sub(1);
                    touched.insert(x);
                }
            }
            let mut exp_ids = Vec::new();
            for &x in &touched {
                let e = &mut inner.exps[x];
                if e.state == ExpState::Failed {
                    e.state = ExpState::Running;
                    exp_ids.push(e.id.clone());
                }
                bump(e);
            }
            // A given-up task's dependents gave up with it, so they are all in `reset`: count what
            // each still waits for only once every one of them is back to blocked.
            for &t in &reset {
                let deps_left = inner.tasks[t]
                    .def
                    .deps
                    .iter()
                    .filter(|d| {
                        inner
                            .by_key
                            .get(d.as_str())
                            .is_some_and(|&di| inner.tasks[di].state != TaskState::Done)
                    })
                    .count();
                let deps_left = u32::try_from(deps_left).unwrap_or(u32::MAX);
                inner.tasks[t].deps_left = deps_left;
                if deps_left == 0 {
                    inner.tasks[t].state = TaskState::Ready;
                    enqueue(inner, t, false);
                }
            }
            let keys: Vec<String> = reset
                .iter()
                .map(|&t| inner.tasks[t].def.key.clone())
                .collect();
            (keys, exp_ids)
        };
        let n = keys.len();
        tracing::info!(experiment = %id, tasks = n, "re-queued the given-up tasks of a failed experiment");
        self.store
            .write(move |tx| {
                for k in &keys {
                    tx.requeue_task(k)?;
                }
                for e in &exp_ids {
                    tx.reopen_experiment(e)?;
                }
                Ok(())
            })
            .await?;
        self.notify.notify_waiters();
        Ok(n)
    }

    /// Cancels an experiment: its queued tasks are no longer handed out, and workers running tasks that
    /// only it needs are told to stop. Returns false when it does not exist or has already ended.
    pub async fn cancel(&self, id: &str) -> Result<bool, CoordError> {
        {
            let mut inner = self.inner.lock();
            let Some(&i) = inner.exp_by_id.get(id) else {
                return Err(CoordError::NotFound(format!("experiment {id}")));
            };
            let e = &mut inner.exps[i];
            if e.state != ExpState::Running {
                return Ok(false);
            }
            e.state = ExpState::Cancelled;
            e.ready_prior.clear();
            e.ready_target.clear();
            bump(e);
        }
        let idc = id.to_string();
        self.store
            .write(move |tx| tx.end_experiment(&idc, ExpState::Cancelled))
            .await?;
        Ok(true)
    }

    pub(super) fn on_exp_changed_state(&self, id: &str) {
        let state = {
            let inner = self.inner.lock();
            inner.exp_by_id.get(id).map(|&i| inner.exps[i].state)
        };
        if let Some(st) = state {
            if st != ExpState::Running {
                let idc = id.to_string();
                self.store
                    .write_nowait(move |tx| tx.end_experiment(&idc, st));
                let _ = self.finished.send(id.to_string());
            }
        }
    }
}
