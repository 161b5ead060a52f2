//! The scheduler: the in-memory hot state of every task (state, dependencies, leases, counters) with
//! SQLite as its durable mirror.
//!
//! Rules:
//! - a task is `Blocked` until its dependencies (the fold's prior task) are done, then `Ready`;
//! - leasing picks, among running experiments with ready tasks, the one with the fewest running tasks
//!   (fair share; ties go round-robin), and within it a prior task first (it unblocks target tasks);
//! - an expired lease puts the task back as lost; a reported failure counts towards `max_attempts`; a
//!   task that fails `max_attempts` times (or is lost [`SchedConfig::max_lost`] times, or fails with a
//!   non-retryable error) gives up, keeping its errors, and so do the tasks that depend on it;
//! - completion is idempotent: the first valid result of a task wins (also a late one from an expired
//!   lease, the result being deterministic); any later one is dropped and counted as a duplicate;
//! - a result is committed to SQLite before it is acknowledged.
//!
//! Tasks are shared by key between experiments: a result stored by one experiment (or an earlier run)
//! is reused by every other, never re-run.

use crate::error::CoordError;
use crate::lease::{ActiveLease, LeaseTable, Progress};
use crate::plan::{Plan, TaskDef, TaskKind};
pub use crate::store::ExpState;
use crate::store::{NewExperiment, NewResult, Snapshot, Store, StoredTaskState, WorkerRow};
use mer_shared::proto;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

mod observe;
pub use observe::{state_name, CoordinatorProbe};

/// Scheduler settings that are not per experiment.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// A task lost this many times gives up (a task that kills its worker every time).
    pub max_lost: u32,
    /// Overrides every experiment's lease length (tests, benchmarks).
    pub lease_ttl: Option<Duration>,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            max_lost: 5,
            lease_ttl: None,
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for dependencies.
    Blocked,
    /// Can be leased.
    Ready,
    /// Held by a worker.
    Leased,
    /// A result is being committed.
    Committing,
    /// A result is stored.
    Done,
    /// Failed too often (or a dependency did); its errors are kept.
    GaveUp,
}

struct Task {
    def: Arc<TaskDef>,
    payload_json: Arc<str>,
    state: TaskState,
    deps_left: u32,
    dependents: Vec<usize>,
    exps: Vec<usize>,
    lease: Option<String>,
    attempts: u32,
    failures: u32,
    lost: u32,
    duplicates: u32,
    errors: Vec<String>,
    checkpoint: Option<String>,
    ttl: Duration,
    max_attempts: u32,
}

struct Experiment {
    id: String,
    name: String,
    identity: String,
    plan: Arc<Plan>,
    tasks: Vec<usize>,
    state: ExpState,
    ready_prior: VecDeque<usize>,
    ready_target: VecDeque<usize>,
    running: u32,
    done: u32,
    gave_up: u32,
    version: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct WorkerInfo {
    name: String,
    slots: u32,
    last_seen: Instant,
}

struct Inner {
    tasks: Vec<Task>,
    by_key: HashMap<Arc<str>, usize>,
    exps: Vec<Experiment>,
    exp_by_id: HashMap<String, usize>,
    leases: LeaseTable,
    workers: HashMap<String, WorkerInfo>,
    worker_seq: u64,
    rr: usize,
    next_seq: i64,
    executions_reused: u64,
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The lease id.
    pub lease_id: String,
    /// The task.
    pub def: Arc<TaskDef>,
    /// Its payload as JSON.
    pub payload_json: Arc<str>,
    /// Checkpoint of the prior task (target tasks with a prior).
    pub prior_checkpoint: Option<String>,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Lease length.
    pub ttl: Duration,
}

/// What a completion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The result was stored.
    Accepted,
    /// A result was already stored (or being stored): this one was dropped and counted.
    Duplicate,
}

/// What a reported failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// The task goes back to the queue.
    Retry,
    /// The task gave up.
    GaveUp,
    /// The lease was not held any more: nothing changed.
    Ignored,
}

/// One task of an experiment, as [`Scheduler::task_views`] reports it (for the dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task key.
    pub key: String,
    /// Prior or target.
    pub kind: TaskKind,
    /// The fold, `dataset/subject`.
    pub fold: String,
    /// Sweep point (target tasks) in this experiment's plan.
    pub sweep_point: Option<u32>,
    /// Where it stands.
    pub state: TaskState,
    /// Leases handed out so far.
    pub attempts: u32,
    /// Failures reported by workers.
    pub failures: u32,
    /// Leases that expired.
    pub lost: u32,
    /// The worker holding it now (leased tasks).
    pub worker: Option<String>,
    /// Its latest reported progress (leased tasks).
    pub progress: Option<Progress>,
    /// Errors of failed attempts.
    pub errors: Vec<String>,
}

/// Result of submitting an experiment.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Experiment id.
    pub id: String,
    /// Tasks in the plan.
    pub tasks: usize,
    /// Tasks already done when submitted.
    pub reused: usize,
    /// True when the same experiment existed already (idempotent re-submission).
    pub existing: bool,
    /// Tasks that had given up and went back to the queue (re-submission of a failed experiment).
    pub retried: usize,
}

/// The scheduler (share it as `Arc<Scheduler>`).
pub struct Scheduler {
    inner: Mutex<Inner>,
    notify: Notify,
    store: Store,
    cfg: SchedConfig,
    finished: mpsc::UnboundedSender<String>,
    metrics: Arc<crate::metrics::Metrics>,
}

fn boot_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}",
        (nanos as u64) & 0xffff_ffff_ffff,
        std::process::id()
    )
}

impl Scheduler {
    /// A scheduler over `store`, restored from it. Experiment ids that finish are sent on the returned
    /// channel (to write their results).
    pub fn open(
        store: Store,
        cfg: SchedConfig,
    ) -> Result<(Arc<Scheduler>, mpsc::UnboundedReceiver<String>), CoordError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Arc::new(Scheduler {
            inner: Mutex::new(Inner {
                tasks: Vec::new(),
                by_key: HashMap::new(),
                exps: Vec::new(),
                exp_by_id: HashMap::new(),
                leases: LeaseTable::new(&boot_id()),
                workers: HashMap::new(),
                worker_seq: 0,
                rr: 0,
                next_seq: 1,
                executions_reused: 0,
            }),
            notify: Notify::new(),
            store,
            cfg,
            finished: tx,
            metrics: crate::metrics::Metrics::new()?,
        });
        let snap = s.store.load()?;
        s.restore(snap)?;
        Ok((s, rx))
    }

    /// The durable store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn restore(&self, snap: Snapshot) -> Result<(), CoordError> {
        let done: HashMap<String, Option<String>> = snap.results.into_iter().collect();
        let rows: HashMap<String, crate::store::StoredTask> =
            snap.tasks.into_iter().map(|t| (t.key.clone(), t)).collect();
        let mut inner = self.inner.lock();
        inner.next_seq = snap.next_seq;
        for e in snap.experiments {
            let plan: Plan = serde_json::from_str(&e.plan_json).map_err(|err| {
                CoordError::json(format!("stored plan of experiment {}", e.id), err)
            })?;
            let ttl = self
                .cfg
                .lease_ttl
                .unwrap_or(Duration::from_millis(e.lease_ms.max(1)));
            let state = e.state;
            add_locked(
                &mut inner,
                &e.id,
                &e.name,
                &e.identity,
                Arc::new(plan),
                e.max_attempts,
                ttl,
                state,
                &done,
                &rows,
            );
        }
        let finished: Vec<String> = inner
            .exps
            .iter_mut()
            .filter_map(|e| {
                let before = e.state;
                update_exp_state(e);
                (before != e.state).then(|| e.id.clone())
            })
            .collect();
        drop(inner);
        for id in finished {
            self.on_exp_changed_state(&id);
        }
        Ok(())
    }

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
    #[allow(clippy::too_many_arguments)]
    pub async fn submit(
        &self,
        name: &str,
        identity: &str,
        spec_hash: &str,
        spec_toml: &str,
        plan: Plan,
        max_attempts: u32,
        lease: Duration,
    ) -> Result<Submitted, CoordError> {
        if let Some(id) = self.find_identity(identity) {
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
                &id,
                name,
                identity,
                Arc::new(plan),
                max_attempts,
                ttl,
                ExpState::Running,
                &done,
                &HashMap::new(),
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
            let lease = ActiveLease {
                task: t,
                worker: worker.to_string(),
                deadline: now + task.ttl,
                ttl: task.ttl,
                attempt: task.attempts,
                exps: exps.clone(),
                progress: Progress::default(),
            };
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
                let lease = ActiveLease {
                    task: t,
                    worker: worker.to_string(),
                    deadline: now + task.ttl,
                    ttl: task.ttl,
                    attempt: task.attempts.max(1),
                    exps: exps.clone(),
                    progress,
                };
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
                            for x in l.exps {
                                inner.exps[x].running = inner.exps[x].running.saturating_sub(1);
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
            let Some(l) = inner.leases.get(lease_id) else {
                return Ok(FailOutcome::Ignored);
            };
            let t = l.task;
            if inner.tasks[t].def.key != key {
                return Err(CoordError::invalid(
                    "fail request",
                    format!("lease {lease_id} is for another task than {key}"),
                ));
            }
            let l = inner.leases.take(lease_id).expect("lease present");
            for x in &l.exps {
                inner.exps[*x].running = inner.exps[*x].running.saturating_sub(1);
            }
            let task = &mut inner.tasks[t];
            task.lease = None;
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

    /// The plan of an experiment.
    pub fn plan(&self, id: &str) -> Option<Arc<Plan>> {
        let inner = self.inner.lock();
        inner.exp_by_id.get(id).map(|&i| inner.exps[i].plan.clone())
    }

    /// A watch that changes whenever the experiment does.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<u64>> {
        let inner = self.inner.lock();
        inner
            .exp_by_id
            .get(id)
            .map(|&i| inner.exps[i].version.subscribe())
    }

    /// Ids of every experiment, in submission order.
    pub fn experiment_ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .exps
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }

    /// The lifecycle state of an experiment, without building its whole [`Scheduler::status`].
    pub fn experiment_state(&self, id: &str) -> Option<ExpState> {
        let inner = self.inner.lock();
        inner.exp_by_id.get(id).map(|&i| inner.exps[i].state)
    }

    /// The status of an experiment (as sent to clients).
    pub fn status(&self, id: &str) -> Option<proto::ExperimentStatus> {
        let inner = self.inner.lock();
        let &i = inner.exp_by_id.get(id)?;
        let e = &inner.exps[i];
        let mut s = proto::ExperimentStatus {
            experiment_id: e.id.clone(),
            name: e.name.clone(),
            state: e.state.key().into(),
            tasks_total: e.tasks.len() as u32,
            tasks_done: e.done,
            tasks_running: e.running,
            tasks_failed: e.gave_up,
            folds_total: e.plan.folds.len() as u32,
            ..Default::default()
        };
        let mut fold_open: HashMap<&str, bool> = HashMap::new();
        for &t in &e.tasks {
            let task = &inner.tasks[t];
            s.lost += task.lost as u64;
            s.duplicates += task.duplicates as u64;
            s.retries += task.failures as u64;
            let open = task.state != TaskState::Done;
            *fold_open.entry(task.def.fold.as_str()).or_insert(false) |= open;
            if task.state == TaskState::GaveUp && s.errors.len() < 50 {
                for err in task.errors.iter().rev().take(3) {
                    s.errors.push(format!(
                        "{} {} ({}): {err}",
                        task.def.kind.key(),
                        task.def.fold,
                        &task.def.key[..12.min(task.def.key.len())]
                    ));
                }
            }
        }
        s.folds_done = fold_open.values().filter(|open| !**open).count() as u32;
        for (_, l) in inner.leases.iter() {
            if l.exps.contains(&i) {
                let d = &inner.tasks[l.task].def;
                s.running.push(proto::RunningTask {
                    task_key: d.key.clone(),
                    fold: d.fold.clone(),
                    kind: d.kind.key().into(),
                    worker_id: l.worker.clone(),
                    stage: l.progress.stage.clone(),
                    epoch: l.progress.epoch,
                    epochs: l.progress.epochs,
                    loss: l.progress.loss,
                    samples_per_s: l.progress.samples_per_s,
                    device: l.progress.device.clone(),
                    gpu_memory_bytes: l.progress.gpu_memory_bytes,
                });
            }
        }
        s.running.sort_by(|a, b| a.fold.cmp(&b.fold));
        Some(s)
    }

    /// Number of live leases.
    pub fn live_leases(&self) -> usize {
        self.inner.lock().leases.len()
    }

    /// Every task of an experiment as the dashboard shows it (read-only), in plan order: fold and sweep
    /// point as this experiment's plan names them, state, counters, and worker + progress while leased.
    pub fn task_views(&self, id: &str) -> Option<Vec<TaskView>> {
        let inner = self.inner.lock();
        let &i = inner.exp_by_id.get(id)?;
        let e = &inner.exps[i];
        let leased: HashMap<usize, &ActiveLease> =
            inner.leases.iter().map(|(_, l)| (l.task, l)).collect();
        let views = e
            .plan
            .tasks
            .iter()
            .filter_map(|def| {
                let &t = inner.by_key.get(def.key.as_str())?;
                let task = &inner.tasks[t];
                let lease = leased.get(&t);
                Some(TaskView {
                    key: def.key.clone(),
                    kind: def.kind,
                    fold: def.fold.clone(),
                    sweep_point: def.sweep_point,
                    state: task.state,
                    attempts: task.attempts,
                    failures: task.failures,
                    lost: task.lost,
                    worker: lease.map(|l| l.worker.clone()),
                    progress: lease.map(|l| l.progress.clone()),
                    errors: task.errors.clone(),
                })
            })
            .collect();
        Some(views)
    }

    fn on_exp_changed_state(&self, id: &str) {
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

fn bump(e: &Experiment) {
    e.version.send_modify(|v| *v += 1);
}

/// Puts a ready task into the queues of its running experiments.
fn enqueue(inner: &mut Inner, t: usize, front: bool) {
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

fn update_exp_state(e: &mut Experiment) {
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
fn finish_task(inner: &mut Inner, t: usize, state: TaskState) -> Vec<String> {
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
fn give_up_task(inner: &mut Inner, t: usize, keys: &mut Vec<String>) -> Vec<String> {
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

/// Adds an experiment to the in-memory state; returns its index.
#[allow(clippy::too_many_arguments)]
fn add_locked(
    inner: &mut Inner,
    id: &str,
    name: &str,
    identity: &str,
    plan: Arc<Plan>,
    max_attempts: u32,
    ttl: Duration,
    state: ExpState,
    done: &HashMap<String, Option<String>>,
    rows: &HashMap<String, crate::store::StoredTask>,
) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, tests::composite_summary};
    use crate::spec::parse_spec;

    fn plan(name: &str, alphas: &str) -> Plan {
        let spec = parse_spec("s.toml", &format!("name = \"{name}\"\ndataset = \"d\"\nscheme = \"megc3\"\nparts = [\"casme2\"]\n[sweep]\nalpha = [{alphas}]\n")).unwrap();
        expand(&spec, &composite_summary("adaptive")).unwrap()
    }

    async fn sched(dir: &std::path::Path) -> Arc<Scheduler> {
        let store = Store::open(&dir.join("s.db")).unwrap();
        Scheduler::open(store, SchedConfig::default()).unwrap().0
    }

    #[tokio::test]
    async fn priors_first_then_targets_unblocked_by_their_prior() {
        let dir = tempfile::tempdir().unwrap();
        let s = sched(dir.path()).await;
        let p = plan("a", "1, 2");
        let priors = p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count();
        s.submit("a", "ida", "h", "", p, 3, Duration::from_secs(60))
            .await
            .unwrap();
        let mut got = vec![];
        while let Some(g) = s.try_lease("w") {
            got.push(g);
        }
        assert_eq!(got.len(), priors, "only prior tasks are ready at first");
        assert!(got.iter().all(|g| g.def.kind == TaskKind::Prior));
        // Finishing one prior unblocks exactly its fold's target tasks, which carry its checkpoint.
        let g = &got[0];
        s.complete(&g.lease_id, "w", &g.def.key, None, Some("ck".into()))
            .await
            .unwrap();
        let t1 = s.try_lease("w").unwrap();
        let t2 = s.try_lease("w").unwrap();
        assert!(s.try_lease("w").is_none());
        for t in [&t1, &t2] {
            assert_eq!(t.def.kind, TaskKind::Target);
            assert_eq!(t.def.fold, g.def.fold);
            assert_eq!(t.prior_checkpoint.as_deref(), Some("ck"));
        }
    }

    #[tokio::test]
    async fn experiments_share_workers_fairly() {
        let dir = tempfile::tempdir().unwrap();
        let s = sched(dir.path()).await;
        let a = plan("a", "1");
        let b = plan("b", "3");
        s.submit("a", "ida", "h", "", a, 3, Duration::from_secs(60))
            .await
            .unwrap();
        s.submit("b", "idb", "h", "", b, 3, Duration::from_secs(60))
            .await
            .unwrap();
        // The two plans share their prior tasks (same key): those count for both; lease 10 tasks.
        let mut by_exp: HashMap<String, usize> = HashMap::new();
        for _ in 0..10 {
            let g = s.try_lease("w").unwrap();
            let inner = s.inner.lock();
            let t = inner.by_key[g.def.key.as_str()];
            for &x in &inner.tasks[t].exps {
                *by_exp.entry(inner.exps[x].id.clone()).or_default() += 1;
            }
        }
        assert_eq!(by_exp.len(), 2);
        let (x, y) = (by_exp["a-ida"], by_exp["b-idb"]);
        assert_eq!(x, y, "shared prior tasks run for both: {by_exp:?}");
    }

    #[tokio::test]
    async fn resubmitting_a_failed_experiment_retries_its_given_up_tasks_durably() {
        let dir = tempfile::tempdir().unwrap();
        let s = sched(dir.path()).await;
        let p = plan("a", "1, 2");
        let total = p.tasks.len();
        let sub = s
            .submit("a", "ida", "h", "", p.clone(), 3, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(sub.retried, 0);
        // One prior fails for good: it and its fold's two targets give up; everything else finishes.
        let bad = s.try_lease("w").unwrap();
        let fold = bad.def.fold.clone();
        let out = s
            .fail(&bad.lease_id, &bad.def.key, "bad sample", false)
            .await
            .unwrap();
        assert_eq!(out, FailOutcome::GaveUp);
        while let Some(g) = s.try_lease("w") {
            s.complete(&g.lease_id, "w", &g.def.key, None, Some("ck".into()))
                .await
                .unwrap();
        }
        let st = s.status(&sub.id).unwrap();
        assert_eq!((st.state.as_str(), st.tasks_failed), ("failed", 3));
        assert_eq!(st.tasks_done as usize, total - 3);
        // The same experiment again: the three tasks are back, the prior first.
        let again = s
            .submit("a", "ida", "h", "", p.clone(), 3, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            (
                again.id.as_str(),
                again.existing,
                again.retried,
                again.reused
            ),
            (sub.id.as_str(), true, 3, total - 3)
        );
        let st = s.status(&sub.id).unwrap();
        assert_eq!((st.state.as_str(), st.tasks_failed), ("running", 0));
        // Durable: a restarted coordinator sees the same.
        s.store().flush().await.unwrap();
        drop(s);
        let s = sched(dir.path()).await;
        let st = s.status(&sub.id).unwrap();
        assert_eq!((st.state.as_str(), st.tasks_failed), ("running", 0));
        let prior = s.try_lease("w").unwrap();
        assert_eq!(
            (prior.def.kind, prior.def.fold.as_str()),
            (TaskKind::Prior, fold.as_str())
        );
        assert!(s.try_lease("w").is_none(), "its targets wait for it");
        s.complete(
            &prior.lease_id,
            "w",
            &prior.def.key,
            None,
            Some("ck".into()),
        )
        .await
        .unwrap();
        let mut n = 0;
        while let Some(g) = s.try_lease("w") {
            assert_eq!(
                (g.def.kind, g.def.fold.as_str()),
                (TaskKind::Target, fold.as_str())
            );
            s.complete(&g.lease_id, "w", &g.def.key, None, None)
                .await
                .unwrap();
            n += 1;
        }
        assert_eq!(n, 2);
        let st = s.status(&sub.id).unwrap();
        assert_eq!((st.state.as_str(), st.tasks_done as usize), ("done", total));
        // A finished experiment re-submitted retries nothing.
        let third = s
            .submit("a", "ida", "h", "", p, 3, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!((third.retried, third.reused), (0, total));
    }

    #[tokio::test]
    async fn expired_leases_are_lost_not_failed_and_give_up_after_max_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let (s, _rx) = Scheduler::open(
            store,
            SchedConfig {
                lease_ttl: Some(Duration::from_millis(10)),
                max_lost: 2,
            },
        )
        .unwrap();
        let p = plan("a", "1");
        let (priors, total) = (
            p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count(),
            p.tasks.len(),
        );
        let id = s
            .submit("a", "ida", "h", "", p, 3, Duration::from_secs(60))
            .await
            .unwrap()
            .id;
        let mut n = 0;
        while s.try_lease("w").is_some() {
            n += 1;
        }
        assert_eq!(n, priors);
        assert_eq!(s.expire(Instant::now() + Duration::from_millis(20)), priors);
        let st = s.status(&id).unwrap();
        assert_eq!(
            (st.lost, st.retries, st.tasks_failed, st.state.as_str()),
            (priors as u64, 0, 0, "running")
        );
        // Lost tasks are back in the queue; lost a second time they give up, and so do their targets.
        let mut n = 0;
        while s.try_lease("w").is_some() {
            n += 1;
        }
        assert_eq!(n, priors);
        s.expire(Instant::now() + Duration::from_millis(20));
        let st = s.status(&id).unwrap();
        assert_eq!(st.state, "failed");
        assert_eq!(st.tasks_failed as usize, total);
        assert!(
            st.errors.iter().any(|e| e.contains("lease lost 2 times")),
            "{:?}",
            st.errors
        );
        assert!(
            st.errors.iter().any(|e| e.contains("gave up")),
            "{:?}",
            st.errors
        );
        s.store().flush().await.unwrap();
        let outcomes = s.store().attempt_outcomes().await.unwrap();
        assert_eq!(outcomes, vec![("lost".to_string(), 2 * priors as i64)]);
    }
}
