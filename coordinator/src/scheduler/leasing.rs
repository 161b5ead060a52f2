//! Workers and leases: registration, the fair-share lease loop (prior tasks first), long polls,
//! heartbeats that push deadlines back or re-adopt a lease after a restart, and expiry of lost leases.

use super::graph::{bump, enqueue, give_up_task};
use super::{placement, Grant, HeartbeatAnswer, Inner, Scheduler, Task, WorkerInfo};
use crate::plan::TaskKind;
use crate::scheduler::lease::{ActiveLease, Progress};
use crate::store::{ExpState, StoredTaskState, WorkerRow};
use crate::task_state::TaskState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
                    devices: devices.to_vec(),
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
                devices: Vec::new(),
                last_seen: Instant::now(),
            });
    }

    /// Records the device list a worker sent with a lease request (it registered with the same one;
    /// this restores it for a worker adopted after a coordinator restart). An empty list changes nothing.
    pub fn note_devices(&self, id: &str, devices: &[String]) {
        if devices.is_empty() {
            return;
        }
        if let Some(w) = self.inner.lock().workers.get_mut(id) {
            if w.devices != devices {
                w.devices = devices.to_vec();
            }
        }
    }

    /// Leases one ready task to slot 0 of `worker` now, if any ([`Scheduler::try_lease_slot`]).
    pub fn try_lease(&self, worker: &str) -> Option<Grant> {
        self.try_lease_slot(worker, 0)
    }

    /// Leases one ready task to slot `slot` of `worker` now, if one fits its devices
    /// ([`placement::DeviceUse::place`]: a gang task only with all its devices idle). Fair share: among
    /// running experiments with a ready task that fits, the one with the fewest running tasks; within an
    /// experiment, prior tasks first, then in queue order.
    pub fn try_lease_slot(&self, worker: &str, slot: u32) -> Option<Grant> {
        self.try_lease_within(worker, slot, None)
    }

    /// [`Scheduler::try_lease_slot`] for a worker with `left` until its batch job ends: a task whose
    /// kind's median duration in the experiment (tasks finished under this process) exceeds `left` is
    /// not handed out; with no finished task of that kind yet, any task is.
    pub fn try_lease_within(
        &self,
        worker: &str,
        slot: u32,
        left: Option<Duration>,
    ) -> Option<Grant> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let LeasePick {
            exp: b,
            prior,
            pos,
            devices,
            ..
        } = pick(inner, worker, slot, left)?;
        inner.rr = (b + 1) % inner.exps.len();
        let e = &mut inner.exps[b];
        let q = if prior {
            &mut e.ready_prior
        } else {
            &mut e.ready_target
        };
        let t = q.remove(pos)?;
        let now = Instant::now();
        let task = &mut inner.tasks[t];
        task.attempts += 1;
        task.state = TaskState::Leased;
        let exps = task.exps.clone();
        let lease = lease_of(
            t,
            task,
            worker,
            now,
            task.attempts,
            Progress::default(),
            devices.clone(),
        );
        let id = inner.leases.grant(lease);
        self.metrics
            .on_lease_granted(&id, inner.tasks[t].def.kind.key());
        let task = &mut inner.tasks[t];
        task.lease = Some(id.clone());
        for &x in &exps {
            inner.exps[x].running += 1;
            bump(&inner.exps[x]);
        }
        let task = &inner.tasks[t];
        let prior_checkpoint = task
            .def
            .payload
            .prior_key
            .as_ref()
            .and_then(|k| inner.by_key.get(k.as_str()))
            .and_then(|&p| inner.tasks[p].checkpoint.clone());
        let grant = Grant {
            lease_id: id.clone(),
            def: task.def.clone(),
            payload_json: task.payload_json.clone(),
            prior_checkpoint,
            attempt: task.attempts,
            ttl: task.ttl,
            devices,
        };
        let (key, w, attempt) = (grant.def.key.clone(), worker.to_string(), grant.attempt);
        self.store
            .write_nowait(move |tx| tx.start_attempt(&id, &key, &w, attempt));
        Some(grant)
    }

    /// Leases a task, waiting up to `wait` for one to become ready (long poll).
    pub async fn lease(&self, worker: &str, slot: u32, wait: Duration) -> Option<Grant> {
        self.lease_within(worker, slot, wait, None).await
    }

    /// [`Scheduler::lease`] for a worker whose batch job ends in `left` ([`Scheduler::try_lease_within`]).
    pub async fn lease_within(
        &self,
        worker: &str,
        slot: u32,
        wait: Duration,
        left: Option<Duration>,
    ) -> Option<Grant> {
        self.touch_worker(worker);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_lease_within(worker, slot, left) {
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

    /// Renews a lease and records progress. Returns whether the worker should go on, and why not. A lease this coordinator
    /// does not know (granted before a restart) is adopted when its task is still waiting for a worker,
    /// holding the `devices` the worker says it holds.
    pub fn heartbeat(
        &self,
        lease_id: &str,
        worker: &str,
        task_key: &str,
        progress: Progress,
        devices: &[u32],
    ) -> HeartbeatAnswer {
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
                return HeartbeatAnswer::stop("the experiment was cancelled");
            }
            return HeartbeatAnswer::go();
        }
        let Some(&t) = inner.by_key.get(task_key) else {
            return HeartbeatAnswer::stop("unknown task");
        };
        let task = &mut inner.tasks[t];
        match task.state {
            TaskState::Ready => {
                // Adopt: the task was in flight when the coordinator restarted and nobody took it since.
                task.state = TaskState::Leased;
                task.lease = Some(lease_id.to_string());
                let exps = task.exps.clone();
                let lease = lease_of(
                    t,
                    task,
                    worker,
                    now,
                    task.attempts.max(1),
                    progress,
                    devices.to_vec(),
                );
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
                HeartbeatAnswer::go()
            }
            TaskState::Done | TaskState::Committing => {
                HeartbeatAnswer::stop("the task is already done")
            }
            TaskState::GaveUp => HeartbeatAnswer::stop("the task gave up"),
            TaskState::Leased | TaskState::Blocked => {
                HeartbeatAnswer::stop("the lease expired and the task was handed to another worker")
            }
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

/// The median of `v` (None when empty).
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
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
    devices: Vec<u32>,
) -> ActiveLease {
    ActiveLease {
        task: t,
        worker: worker.to_string(),
        deadline: now + task.ttl,
        started: now,
        ttl: task.ttl,
        attempt,
        exps: task.exps.clone(),
        progress,
        devices,
    }
}

/// The task the fair-share pick chose for a worker slot.
struct LeasePick {
    /// Index of the experiment in `Inner::exps`.
    exp: usize,
    /// Whether the task waits in the experiment's prior queue (else in its target queue).
    prior: bool,
    /// The task's position in that queue.
    pos: usize,
    /// The worker's devices the task is placed on.
    devices: Vec<u32>,
    /// The experiment's running tasks when it was picked (the fewest wins).
    running: u32,
}

/// Fair share: among the running experiments with a ready task that fits the worker's free devices
/// (and, for a worker with `left` until its job ends, whose kind's median duration fits), the one with
/// the fewest running tasks, starting round-robin after the last one served; within it a prior task
/// first. Drops tasks no longer ready from the queues' fronts on the way.
fn pick(inner: &mut Inner, worker: &str, slot: u32, left: Option<Duration>) -> Option<LeasePick> {
    let n = inner.exps.len();
    if n == 0 {
        return None;
    }
    let devices = inner.workers.get(worker).map_or(0, |w| w.devices.len());
    let usage = placement::DeviceUse::of(
        devices,
        inner
            .leases
            .iter()
            .filter(|(_, l)| l.worker == worker)
            .map(|(_, l)| l.devices.as_slice()),
    );
    // Fair share: the running experiment with a fitting ready task and the fewest running tasks.
    let mut best: Option<LeasePick> = None;
    for off in 0..n {
        let i = (inner.rr + off) % n;
        let e = &mut inner.exps[i];
        if e.state != ExpState::Running {
            continue;
        }
        for q in [&mut e.ready_prior, &mut e.ready_target] {
            while let Some(&t) = q.front() {
                if inner.tasks[t].state == TaskState::Ready {
                    break;
                }
                q.pop_front();
            }
        }
        if best.as_ref().is_some_and(|b| e.running >= b.running) {
            continue;
        }
        // Median durations by kind, once per experiment and only for a worker whose job ends.
        let medians: HashMap<TaskKind, f64> = match left {
            Some(_) => e
                .durations
                .iter()
                .filter_map(|(k, v)| median(v).map(|m| (*k, m)))
                .collect(),
            None => HashMap::new(),
        };
        let mut found = None;
        'queues: for (prior, q) in [(true, &e.ready_prior), (false, &e.ready_target)] {
            for (pos, &t) in q.iter().enumerate() {
                let task = &inner.tasks[t];
                if task.state != TaskState::Ready {
                    continue;
                }
                if let (Some(left), Some(m)) = (left, medians.get(&task.def.kind)) {
                    if *m > left.as_secs_f64() {
                        continue;
                    }
                }
                if let Some(d) = usage.place(slot, task.def.payload.train.devices_per_task) {
                    found = Some((prior, pos, d));
                    break 'queues;
                }
            }
        }
        if let Some((prior, pos, d)) = found {
            best = Some(LeasePick {
                exp: i,
                prior,
                pos,
                devices: d,
                running: e.running,
            });
        }
    }
    best
}
