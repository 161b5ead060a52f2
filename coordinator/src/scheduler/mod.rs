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
//!
//! Files: this one holds the state and its types; `lease.rs` the lease table; `graph.rs` the task graph's state machine (adding an
//! experiment's tasks, queueing, finishing, giving up); `experiments.rs` submission, retry and
//! cancellation; `leasing.rs` workers, leases, heartbeats and expiry; `completion.rs` results and
//! failures; `views.rs` read-only views (status, task views); `observe.rs` metrics and probes.

use crate::error::CoordError;
use crate::plan::{Plan, TaskDef, TaskKind};
use crate::scheduler::lease::{LeaseTable, Progress};
pub use crate::store::ExpState;
use crate::store::{Snapshot, Store};
pub use crate::task_state::TaskState;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

mod completion;
mod experiments;
mod graph;
pub mod lease;
mod leasing;
mod observe;
mod placement;
mod views;

use graph::{add_locked, update_exp_state, NewExpEntry};
pub use observe::CoordinatorProbe;

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

/// One node of the task graph, shared by every experiment whose plan contains its key.
struct Task {
    /// The task as the planner made it (key, kind, fold, dependencies, payload).
    def: Arc<TaskDef>,
    /// The payload serialised once, when the task is added: every lease of it sends the same bytes.
    payload_json: Arc<str>,
    /// Where it stands; the durable part of it (pending / done / gave up) is mirrored in the store.
    state: TaskState,
    /// Dependencies not done yet; the task becomes `Ready` when this reaches 0.
    deps_left: u32,
    /// Tasks (indices into `Inner::tasks`) waiting for this one: their `deps_left` drops when it is done.
    dependents: Vec<usize>,
    /// Experiments (indices into `Inner::exps`) that need it; a task shared by two experiments runs once.
    exps: Vec<usize>,
    /// The lease that holds it now, if any.
    lease: Option<String>,
    /// Leases handed out so far (durable, so a restart does not reset the attempt numbers).
    attempts: u32,
    /// Failures reported by workers; at `max_attempts` the task gives up.
    failures: u32,
    /// Leases that expired; at `SchedConfig::max_lost` the task gives up (a task that kills its worker).
    lost: u32,
    /// Results that arrived after the first one was stored (dropped, counted).
    duplicates: u32,
    /// Every failed attempt's error, kept for status and reports even after a retry.
    errors: Vec<String>,
    /// The artifact hash of a finished prior task's checkpoint (what its target tasks download).
    checkpoint: Option<String>,
    /// Lease length of the first experiment that added it.
    ttl: Duration,
    /// Attempts before giving up, from the first experiment that added it.
    max_attempts: u32,
}

/// A submitted experiment: its plan, and the queues the fair-share lease loop takes from.
struct Experiment {
    /// Experiment id (`<name>-<short hash>`).
    id: String,
    /// Name from the spec.
    name: String,
    /// Spec hash + dataset hashes: a re-submission with the same identity is the same experiment.
    identity: String,
    /// The expanded plan (also what reports and aggregation read).
    plan: Arc<Plan>,
    /// Its tasks, indices into `Inner::tasks`, in plan order.
    tasks: Vec<usize>,
    /// Lifecycle state (mirrored in the store when it ends).
    state: ExpState,
    /// Ready prior tasks: leased before any target task, since each unblocks a fold's targets.
    ready_prior: VecDeque<usize>,
    /// Ready target tasks.
    ready_target: VecDeque<usize>,
    /// Its tasks held by workers now; fair share leases to the experiment with the fewest.
    running: u32,
    /// Its tasks with a stored result.
    done: u32,
    /// Its tasks that gave up.
    gave_up: u32,
    /// Bumped on every change, so that watchers (status streams, the dashboard) wake up.
    version: watch::Sender<u64>,
    /// Seconds each finished task of a kind took under its lease in this process (prior, target): a
    /// worker whose batch job ends soon gets only a task whose kind's median fits.
    durations: HashMap<TaskKind, Vec<f64>>,
    /// What the launcher says about this experiment (Slurm: job arrays, element states, a pause).
    launcher: Vec<String>,
}

/// A registered worker, as the scheduler knows it in memory (its durable row is in the store).
#[derive(Debug, Clone)]
struct WorkerInfo {
    /// The name it registered with.
    name: String,
    /// Concurrent task slots.
    slots: u32,
    /// Its devices in registration order (slot `i` trains on `devices[i % len]`); gang leases hold
    /// indices into this list. Empty while unknown (adopted after a restart, before its next lease poll).
    devices: Vec<String>,
    /// Its last lease poll or heartbeat (for status and the dashboard).
    last_seen: Instant,
}

/// Everything behind the scheduler's one lock. Tasks and experiments are never removed, so their
/// indices stay valid for the life of the process and serve as cheap references between them.
struct Inner {
    /// Every task of every experiment, each key once.
    tasks: Vec<Task>,
    /// Task key -> index into `tasks`.
    by_key: HashMap<Arc<str>, usize>,
    /// Every experiment, in submission (or restore) order.
    exps: Vec<Experiment>,
    /// Experiment id -> index into `exps`.
    exp_by_id: HashMap<String, usize>,
    /// Live leases, with their deadlines.
    leases: LeaseTable,
    /// Registered workers by id.
    workers: HashMap<String, WorkerInfo>,
    /// Makes worker ids unique within this coordinator's life (`<name>-<n>`).
    worker_seq: u64,
    /// Round-robin position among experiments tied on fair share.
    rr: usize,
    /// Sequence number of the next submitted experiment (durable order of experiments).
    next_seq: i64,
    /// Tasks found done at submission or restore (results reused, never re-run); a metric.
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
    /// The worker's devices the task trains on (indices into its device list; more than one for a gang
    /// lease; empty: the slot's own device on a worker whose device list is unknown).
    pub devices: Vec<u32>,
}

/// The scheduler's answer to a heartbeat (the `HeartbeatReply` on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// Whether the worker should go on with the task.
    pub keep_going: bool,
    /// Why not (empty when it should go on).
    pub reason: String,
}

impl HeartbeatAnswer {
    /// Go on.
    pub fn go() -> Self {
        HeartbeatAnswer {
            keep_going: true,
            reason: String::new(),
        }
    }

    /// Stop, for `reason`.
    pub fn stop(reason: &str) -> Self {
        HeartbeatAnswer {
            keep_going: false,
            reason: reason.to_string(),
        }
    }
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
    /// The worker released it unfinished (told to stop): back in the queue, no attempt counted.
    Interrupted,
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
    /// An inner task of nested selection (not one of the fold x point grid's cells).
    pub inner: bool,
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
    /// The devices its lease holds (leased tasks; more than one for a gang lease).
    pub devices: Vec<String>,
    /// Errors of failed attempts.
    pub errors: Vec<String>,
}

/// An experiment to submit ([`Scheduler::submit`]).
#[derive(Debug, Clone)]
pub struct Submission {
    /// Name from the spec.
    pub name: String,
    /// Spec hash + dataset hashes: submitting the same identity again returns the existing experiment.
    pub identity: String,
    /// Hash of the spec.
    pub spec_hash: String,
    /// The spec text (stored; the Kubernetes controller and reports read it back).
    pub spec_toml: String,
    /// The expanded plan.
    pub plan: Plan,
    /// Attempts per task before it gives up.
    pub max_attempts: u32,
    /// Lease length.
    pub lease: Duration,
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
    /// The hot state. Held briefly and never across an await: store writes happen after it is released.
    inner: Mutex<Inner>,
    /// Wakes lease long-polls when a task becomes ready.
    notify: Notify,
    /// The durable mirror (results are committed before they are acknowledged).
    store: Store,
    /// Settings that are not per experiment.
    cfg: SchedConfig,
    /// Ids of experiments that ended (done, failed or cancelled), for the result writer.
    finished: mpsc::UnboundedSender<String>,
    /// Metric families; the event counters are fed here.
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
                NewExpEntry {
                    id: &e.id,
                    name: &e.name,
                    identity: &e.identity,
                    plan: Arc::new(plan),
                    max_attempts: e.max_attempts,
                    ttl,
                    state,
                    done: &done,
                    rows: &rows,
                },
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::expand;
    use crate::spec::parse_spec;
    use crate::test_support::composite_summary;

    fn plan(name: &str, alphas: &str) -> Plan {
        let spec = parse_spec("s.toml", &format!("name = \"{name}\"\ndataset = \"d\"\nscheme = \"megc3\"\nparts = [\"casme2\"]\n[sweep]\nalpha = [{alphas}]\n")).unwrap();
        expand(&spec, &composite_summary("adaptive")).unwrap()
    }

    fn submission(name: &str, identity: &str, plan: Plan) -> Submission {
        Submission {
            name: name.into(),
            identity: identity.into(),
            spec_hash: "h".into(),
            spec_toml: String::new(),
            plan,
            max_attempts: 3,
            lease: Duration::from_secs(60),
        }
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
        s.submit(submission("a", "ida", p)).await.unwrap();
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
        s.submit(submission("a", "ida", a)).await.unwrap();
        s.submit(submission("b", "idb", b)).await.unwrap();
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
    async fn interrupted_releases_count_no_attempt_and_short_jobs_get_only_tasks_that_fit() {
        let dir = tempfile::tempdir().unwrap();
        let s = sched(dir.path()).await;
        let p = plan("a", "1");
        let sub = s.submit(submission("a", "ida", p.clone())).await.unwrap();
        // Released unfinished many times over (more than max_attempts): never a failure.
        for _ in 0..5 {
            let g = s.try_lease("w").unwrap();
            assert_eq!(g.def.kind, TaskKind::Prior);
            let out = s
                .release_interrupted(&g.lease_id, &g.def.key, "told to stop")
                .await
                .unwrap();
            assert_eq!(out, FailOutcome::Interrupted);
        }
        let st = s.status(&sub.id).unwrap();
        assert_eq!(
            (st.state.as_str(), st.retries, st.tasks_failed),
            ("running", 0, 0)
        );
        let outcomes = s.store().attempt_outcomes().await.unwrap();
        assert_eq!(outcomes, vec![("interrupted".to_string(), 5)]);
        // A prior task finishes after about 50 ms: a worker with 10 ms left gets no prior task, one
        // with 10 s does, and one without a limit does.
        let g = s.try_lease("w").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.complete(&g.lease_id, "w", &g.def.key, None, Some("ck".into()))
            .await
            .unwrap();
        let next_prior = {
            let inner = s.inner.lock();
            inner.exps[0].ready_prior.len()
        };
        assert!(next_prior > 0, "another prior task is ready");
        // With 10 ms left only targets come (no target has finished: any fits), until none is ready.
        while let Some(g) = s.try_lease_within("w", 0, Some(Duration::from_millis(10))) {
            assert_eq!(
                g.def.kind,
                TaskKind::Target,
                "no prior task for a job ending in 10 ms"
            );
        }
        let g = s
            .try_lease_within("w", 0, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(g.def.kind, TaskKind::Prior);
        assert!(s.try_lease_within("w", 0, None).is_some());
    }

    #[tokio::test]
    async fn resubmitting_a_failed_experiment_retries_its_given_up_tasks_durably() {
        let dir = tempfile::tempdir().unwrap();
        let s = sched(dir.path()).await;
        let p = plan("a", "1, 2");
        let total = p.tasks.len();
        let sub = s.submit(submission("a", "ida", p.clone())).await.unwrap();
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
        let again = s.submit(submission("a", "ida", p.clone())).await.unwrap();
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
        let third = s.submit(submission("a", "ida", p)).await.unwrap();
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
        let id = s.submit(submission("a", "ida", p)).await.unwrap().id;
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
