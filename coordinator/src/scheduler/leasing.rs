//! Workers and leases: registration, the fair-share lease loop (prior tasks first), long polls,
//! heartbeats that push deadlines back or re-adopt a lease after a restart, and expiry of lost leases.

use super::*;

impl Scheduler {
    /// Registers a worker and returns its id.
    pub fn register_worker(
        &self,
        name: &str,
        devices: &[String],
        slots: u32,
        version: &str,
    ) -> String {
        let id = {
            let mut inner = self.inner.lock();
            inner.worker_seq += 1;
            let id = format!(
                "{}-{}",
                if name.is_empty() { "worker" } else { name },
                inner.worker_seq
            );
            inner.workers.insert(
                id.clone(),
                WorkerInfo {
                    name: name.to_string(),
                    slots,
                    last_seen: Instant::now(),
                },
            );
            id
        };
        let row = WorkerRow {
            id: id.clone(),
            name: name.to_string(),
            devices: devices.to_vec(),
            slots,
            version: version.to_string(),
            registered_ms: crate::store::now_ms(),
        };
        self.store.write_nowait(move |tx| tx.upsert_worker(&row));
        id
    }

    /// Whether a worker id is known (registered since this coordinator started).
    pub fn knows_worker(&self, id: &str) -> bool {
        self.inner.lock().workers.contains_key(id)
    }

    /// Names of the workers known to this coordinator process, by worker id.
    pub fn workers(&self) -> Vec<(String, String)> {
        let inner = self.inner.lock();
        let mut v: Vec<(String, String)> = inner
            .workers
            .iter()
            .map(|(k, w)| (k.clone(), w.name.clone()))
            .collect();
        v.sort();
        v
    }

    /// Re-registers a worker id that a previous coordinator process handed out.
    pub fn adopt_worker(&self, id: &str) {
        self.inner
            .lock()
            .workers
            .entry(id.to_string())
            .or_insert(WorkerInfo {
                name: id.to_string(),
                slots: 0,
                last_seen: Instant::now(),
            });
    }

    /// Leases one ready task to `worker` now, if any.
    pub fn try_lease(&self, worker: &str) -> Option<Grant> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let n = inner.exps.len();
        if n == 0 {
            return None;
        }
        // Fair share: the running experiment with ready work and the fewest running tasks.
        loop {
            let mut best: Option<(usize, u32)> = None;
            for off in 0..n {
                let i = (inner.rr + off) % n;
                let e = &mut inner.exps[i];
                if e.state != ExpState::Running {
                    continue;
                }
                while let Some(&t) = e.ready_prior.front() {
                    if inner.tasks[t].state == TaskState::Ready {
                        break;
                    }
                    e.ready_prior.pop_front();
                }
                while let Some(&t) = e.ready_target.front() {
                    if inner.tasks[t].state == TaskState::Ready {
                        break;
                    }
                    e.ready_target.pop_front();
                }
                if e.ready_prior.is_empty() && e.ready_target.is_empty() {
                    continue;
                }
                if best.is_none_or(|(_, r)| e.running < r) {
                    best = Some((i, e.running));
                }
            }
            let (b, _) = best?;
            inner.rr = (b + 1) % n;
            let e = &mut inner.exps[b];
            let Some(t) = e
                .ready_prior
                .pop_front()
                .or_else(|| e.ready_target.pop_front())
            else {
                continue;
            };
            if inner.tasks[t].state != TaskState::Ready {
                continue;
            }
            let now = Instant::now();
            let task = &mut inner.tasks[t];
            task.attempts += 1;
            task.state = TaskState::Leased;
            let exps = task.exps.clone();
            let lease = lease_of(t, task, worker, now, task.attempts, Progress::default());
            let id = inner.leases.grant(lease);
            self.metrics
                .on_lease_granted(&id, inner.tasks[t].def.kind.key());
            let task = &mut inner.tasks[t];
            task.lease = Some(id.clone());
            let grant = Grant {
                lease_id: id.clone(),
                def: task.def.clone(),
                payload_json: task.payload_json.clone(),
                prior_checkpoint: None,
                attempt: task.attempts,
                ttl: task.ttl,
            };
            for &x in &exps {
                inner.exps[x].running += 1;
                bump(&inner.exps[x]);
            }
            let prior_checkpoint = grant
                .def
                .payload
                .prior_key
                .as_ref()
                .and_then(|k| inner.by_key.get(k.as_str()))
                .and_then(|&p| inner.tasks[p].checkpoint.clone());
            let (key, w, attempt) = (grant.def.key.clone(), worker.to_string(), grant.attempt);
            self.store
                .write_nowait(move |tx| tx.start_attempt(&id, &key, &w, attempt));
            return Some(Grant {
                prior_checkpoint,
                ..grant
            });
        }
    }

    /// Leases a task, waiting up to `wait` for one to become ready (long poll).
    pub async fn lease(&self, worker: &str, wait: Duration) -> Option<Grant> {
        self.touch_worker(worker);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_lease(worker) {
                return Some(g);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    /// Wakes every long-polling lease request (after a shutdown request, say).
    pub fn wake_all(&self) {
        self.notify.notify_waiters();
    }

    /// Renews a lease and records progress. Returns `(keep_going, reason)`. A lease this coordinator
    /// does not know (granted before a restart) is adopted when its task is still waiting for a worker.
    pub fn heartbeat(
        &self,
        lease_id: &str,
        worker: &str,
        task_key: &str,
        progress: Progress,
    ) -> (bool, String) {
        self.touch_worker(worker);
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let now = Instant::now();
        if let Some(l) = inner.leases.get(lease_id) {
            let t = l.task;
            let exps = l.exps.clone();
            inner.leases.renew(lease_id, now, Some(progress));
            let all_cancelled = inner.tasks[t]
                .exps
                .iter()
                .all(|&x| inner.exps[x].state == ExpState::Cancelled);
            for x in exps {
                bump(&inner.exps[x]);
            }
            if all_cancelled {
                return (false, "the experiment was cancelled".into());
            }
            return (true, String::new());
        }
        let Some(&t) = inner.by_key.get(task_key) else {
            return (false, "unknown task".into());
        };
        let task = &mut inner.tasks[t];
        match task.state {
            TaskState::Ready => {
                // Adopt: the task was in flight when the coordinator restarted and nobody took it since.
                task.state = TaskState::Leased;
                task.lease = Some(lease_id.to_string());
                let exps = task.exps.clone();
                let lease = lease_of(t, task, worker, now, task.attempts.max(1), progress);
                inner.leases.adopt(lease_id, lease);
                for x in exps {
                    inner.exps[x].running += 1;
                    bump(&inner.exps[x]);
                }
                tracing::info!(
                    lease = lease_id,
                    task = task_key,
                    "adopted a lease granted before a restart"
                );
                (true, String::new())
            }
            TaskState::Done | TaskState::Committing => (false, "the task is already done".into()),
            TaskState::GaveUp => (false, "the task gave up".into()),
            TaskState::Leased | TaskState::Blocked => (
                false,
                "the lease expired and the task was handed to another worker".into(),
            ),
        }
    }

    /// Expires every lease past its deadline: the tasks go back to the queue as lost. Returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let (n, changed) = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            let expired = inner.leases.take_expired(now);
            let n = expired.len();
            let mut changed = Vec::new();
            for (id, l) in expired {
                self.metrics.on_lease_expired(&id);
                let t = l.task;
                for x in &l.exps {
                    inner.exps[*x].running = inner.exps[*x].running.saturating_sub(1);
                    bump(&inner.exps[*x]);
                }
                let task = &mut inner.tasks[t];
                if task.lease.as_deref() != Some(id.as_str()) {
                    continue;
                }
                task.lease = None;
                task.lost += 1;
                tracing::warn!(task = %task.def.key, fold = %task.def.fold, worker = %l.worker, "lease expired: task lost, back in the queue");
                let (key, lost) = (task.def.key.clone(), task.lost);
                let mut gave_up = vec![];
                if lost >= self.cfg.max_lost {
                    task.errors.push(format!(
                        "lease lost {lost} times (the worker died or was cut off each time)"
                    ));
                    changed.extend(give_up_task(inner, t, &mut gave_up));
                } else {
                    inner.tasks[t].state = TaskState::Ready;
                    enqueue(inner, t, true);
                }
                self.store.write_nowait(move |tx| {
                    tx.record_lost(&key, lost, &id)?;
                    for g in &gave_up {
                        tx.set_task_state(g, StoredTaskState::GaveUp)?;
                    }
                    Ok(())
                });
            }
            (n, changed)
        };
        for id in changed {
            self.on_exp_changed_state(&id);
        }
        if n > 0 {
            self.notify.notify_waiters();
        }
        n
    }
}

/// A lease of task `t` (held in `task`) for `worker` from `now`, counted as running in each of the task's
/// experiments.
fn lease_of(
    t: usize,
    task: &Task,
    worker: &str,
    now: Instant,
    attempt: u32,
    progress: Progress,
) -> ActiveLease {
    ActiveLease {
        task: t,
        worker: worker.to_string(),
        deadline: now + task.ttl,
        ttl: task.ttl,
        attempt,
        exps: task.exps.clone(),
        progress,
    }
}
