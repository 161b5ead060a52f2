//! A leased task's end: its result (committed before it is acknowledged; the first valid result wins,
//! later ones are counted as duplicates) or its failure (retried until `max_attempts`, then given up).

use super::graph::{bump, enqueue, finish_task, give_up_task};
use super::{CompleteOutcome, FailOutcome, Inner, Scheduler};
use crate::error::CoordError;
use crate::plan::TaskDef;
use crate::scheduler::lease::ActiveLease;
use crate::store::{NewResult, StoredTaskState};
use crate::task_state::TaskState;
use std::sync::Arc;

impl Scheduler {
    /// The task a lease or key refers to (for validating a completion).
    pub fn task_def(&self, key: &str) -> Option<Arc<TaskDef>> {
        let inner = self.inner.lock();
        inner.by_key.get(key).map(|&t| inner.tasks[t].def.clone())
    }

    /// Stores a task's result durably (first valid result wins) and then marks it done.
    /// `result_json` is the FoldResult of a target task, `checkpoint` the artifact of a prior task.
    pub async fn complete(
        &self,
        lease_id: &str,
        worker: &str,
        key: &str,
        result_json: Option<String>,
        checkpoint: Option<String>,
    ) -> Result<CompleteOutcome, CoordError> {
        // Phase 1: claim the task.
        let claim = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            let Some(&t) = inner.by_key.get(key) else {
                return Err(CoordError::NotFound(format!("task {key}")));
            };
            match inner.tasks[t].state {
                TaskState::Done | TaskState::Committing | TaskState::GaveUp => {
                    inner.tasks[t].duplicates += 1;
                    None
                }
                _ => {
                    // Whoever holds the lease now (this worker, or another one after an expiry) loses it.
                    if let Some(old) = inner.tasks[t].lease.take() {
                        if let Some(l) = inner.leases.take(&old) {
                            let secs = l.started.elapsed().as_secs_f64();
                            let kind = inner.tasks[t].def.kind;
                            for x in l.exps {
                                let e = &mut inner.exps[x];
                                e.running = e.running.saturating_sub(1);
                                e.durations.entry(kind).or_default().push(secs);
                            }
                        }
                    }
                    inner.tasks[t].state = TaskState::Committing;
                    Some(t)
                }
            }
        };
        let (k, l, w) = (key.to_string(), lease_id.to_string(), worker.to_string());
        let Some(t) = claim else {
            self.store
                .write(move |tx| tx.count_duplicate(&k, &l))
                .await?;
            tracing::info!(task = key, lease = lease_id, "duplicate result dropped");
            return Ok(CompleteOutcome::Duplicate);
        };
        // Phase 2: commit, then acknowledge.
        let kind = self.task_def(key).map(|d| d.kind.key()).unwrap_or("target");
        let row = NewResult {
            task_key: k,
            kind,
            result_json,
            checkpoint: checkpoint.clone(),
            worker_id: w,
            lease_id: l,
        };
        let res = self.store.write(move |tx| tx.store_result(&row)).await;
        if let Err(e) = res {
            // Nothing stored: the task goes back to the queue.
            let mut inner = self.inner.lock();
            inner.tasks[t].state = TaskState::Ready;
            enqueue(&mut inner, t, true);
            drop(inner);
            self.notify.notify_waiters();
            return Err(e);
        }
        let changed = {
            let mut inner = self.inner.lock();
            inner.tasks[t].checkpoint = checkpoint;
            finish_task(&mut inner, t, TaskState::Done)
        };
        for id in changed {
            self.on_exp_changed_state(&id);
        }
        self.notify.notify_waiters();
        self.metrics.on_lease_ended(lease_id, "done");
        Ok(CompleteOutcome::Accepted)
    }

    /// The lease holder released its task unfinished because it was told to stop (its batch job ends
    /// or was preempted): the task goes back to the front of the queue, no failure is counted (its
    /// `max_attempts` budget is untouched), and the attempt is recorded as `interrupted` with `reason`.
    pub async fn release_interrupted(
        &self,
        lease_id: &str,
        key: &str,
        reason: &str,
    ) -> Result<FailOutcome, CoordError> {
        {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let Some((t, l)) = end_held_lease(inner, lease_id, key, "release request")? else {
                return Ok(FailOutcome::Ignored);
            };
            inner.tasks[t].state = TaskState::Ready;
            enqueue(inner, t, true);
            for x in l.exps {
                bump(&inner.exps[x]);
            }
        }
        let (l, r) = (lease_id.to_string(), reason.to_string());
        self.store
            .write(move |tx| tx.record_interrupted(&l, &r))
            .await?;
        self.notify.notify_waiters();
        self.metrics.on_lease_ended(lease_id, "interrupted");
        Ok(FailOutcome::Interrupted)
    }

    /// Records a failure reported by the lease holder.
    pub async fn fail(
        &self,
        lease_id: &str,
        key: &str,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome, CoordError> {
        let held = self.inner.lock().leases.get(lease_id).is_some();
        if !held {
            let (l, e) = (lease_id.to_string(), error.to_string());
            self.store
                .write(move |tx| tx.record_late_failure(&l, &e))
                .await?;
            return Ok(FailOutcome::Ignored);
        }
        let (outcome, t_errors, failures, gave_up_keys, changed) = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let Some((t, l)) = end_held_lease(inner, lease_id, key, "fail request")? else {
                return Ok(FailOutcome::Ignored);
            };
            let task = &mut inner.tasks[t];
            task.failures += 1;
            task.errors
                .push(format!("attempt {} on {}: {}", l.attempt, l.worker, error));
            let give_up = !retryable || task.failures >= task.max_attempts;
            let errors = task.errors.clone();
            let failures = task.failures;
            if give_up {
                let mut keys = vec![];
                let changed = give_up_task(inner, t, &mut keys);
                (FailOutcome::GaveUp, errors, failures, keys, changed)
            } else {
                task.state = TaskState::Ready;
                enqueue(inner, t, true);
                for x in l.exps {
                    bump(&inner.exps[x]);
                }
                (FailOutcome::Retry, errors, failures, vec![], vec![])
            }
        };
        let (k, l, e) = (key.to_string(), lease_id.to_string(), error.to_string());
        self.store
            .write(move |tx| {
                tx.record_failure(&k, failures, &t_errors, &l, &e)?;
                for g in &gave_up_keys {
                    tx.set_task_state(g, StoredTaskState::GaveUp)?;
                }
                Ok(())
            })
            .await?;
        for id in changed {
            self.on_exp_changed_state(&id);
        }
        self.notify.notify_waiters();
        self.metrics.on_lease_ended(
            lease_id,
            if outcome == FailOutcome::Retry {
                "retry"
            } else {
                "gave_up"
            },
        );
        Ok(outcome)
    }
}

/// Ends lease `lease_id` of task `key` as its holder reported (a failure or a release): takes it from the
/// table, counts it out of its experiments' running tasks, and clears the task's lease. `None` when the
/// lease is not held any more; an error when it is another task's (`call` names the request).
fn end_held_lease(
    inner: &mut Inner,
    lease_id: &str,
    key: &str,
    call: &str,
) -> Result<Option<(usize, ActiveLease)>, CoordError> {
    let Some(l) = inner.leases.get(lease_id) else {
        return Ok(None);
    };
    let t = l.task;
    if inner.tasks[t].def.key != key {
        return Err(CoordError::invalid(
            call,
            format!("lease {lease_id} is for another task than {key}"),
        ));
    }
    let Some(l) = inner.leases.take(lease_id) else {
        return Ok(None);
    };
    for x in &l.exps {
        inner.exps[*x].running = inner.exps[*x].running.saturating_sub(1);
    }
    inner.tasks[t].lease = None;
    Ok(Some((t, l)))
}
