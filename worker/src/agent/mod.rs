//! The worker agent: registers with a coordinator, runs N slots that each long-poll for a task, fetch its
//! inputs (content-addressed, hash-checked, cached), run it with a [`Trainer`] on a blocking thread while
//! heartbeating its progress, and report the result (or the failure). On shutdown (SIGTERM in
//! `mer worker`) it drains: no new leases, running tasks finish and are reported, then it exits. A
//! [`Drain`] with a grace (a batch job's time limit or preemption, `mer worker --drain-grace`) bounds
//! that: a task still running when the grace runs out is cancelled and released as *interrupted*, which
//! the coordinator queues again without counting a failure. A worker that knows when its batch job ends
//! ([`AgentConfig::job_end`]) sends the time left with each lease request, and the coordinator hands it
//! only tasks whose kind usually finishes in that time.
//!
//! The agent is generic over [`Trainer`] so this crate needs no libtorch: `mer worker` plugs in the real
//! engine ([`crate::engine_trainer`], with the `torch` feature), tests and benchmarks the deterministic
//! [`sim::SimTrainer`].
//!
//! Room `agent`: uses nothing of this crate but [`crate::error`], and needs no feature.

// The rooms of the agent: the trainer contract, the dataset cache, the simulated trainer.
pub mod dataset_cache;
pub mod sim;
pub mod trainer;

use crate::agent::trainer::{TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError};
use crate::error::WorkerError;
use mer_shared::artifact_store::ArtifactStore;
use mer_shared::client::{connect, download_to, upload_file, Clients, ConnectOptions};
use mer_shared::proto::{self, PROTOCOL_VERSION};
use mer_shared::task::{TaskKind, TaskPayload};
use mer_shared::SharedError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use mer_shared::task::Progress;

/// A task's fetched inputs: the dataset, the prior checkpoint, a user method's files.
type FetchedInputs = (PathBuf, Option<PathBuf>, Vec<(String, PathBuf)>);

/// Worker agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The coordinator.
    pub connect: ConnectOptions,
    /// Name shown by the coordinator.
    pub name: String,
    /// Concurrent tasks.
    pub slots: u32,
    /// Devices; slot `i` uses `devices[i % len]`.
    pub devices: Vec<String>,
    /// Artifact cache (datasets, checkpoints) and task scratch space.
    pub cache_dir: PathBuf,
    /// Long-poll length of a lease request.
    pub poll_wait: Duration,
    /// Heartbeat interval (None: what the coordinator suggests).
    pub heartbeat: Option<Duration>,
    /// How long to keep retrying when the coordinator is unreachable before giving up.
    pub unreachable_timeout: Duration,
    /// Records the latency (microseconds) of every lease call that returned a task (benchmarks).
    pub lease_latencies: Option<Arc<parking_lot::Mutex<Vec<u32>>>>,
    /// When the batch job running this worker ends (its time limit); None = no end.
    pub job_end: Option<std::time::SystemTime>,
}

/// How a worker stops. Starting it ends leasing at once; with a grace, the tasks still running when the
/// grace runs out are cancelled and released as interrupted (not failures). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    deadline: Arc<parking_lot::Mutex<Option<tokio::time::Instant>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Drain {
    /// A drain started by cancelling `token` (without a grace: running tasks finish) or by
    /// [`Drain::start`].
    pub fn new(token: CancellationToken) -> Drain {
        Drain {
            token,
            ..Drain::default()
        }
    }

    /// Starts draining: no new lease. With `grace`, running tasks get until now + grace; an earlier
    /// deadline from a previous call stays.
    pub fn start(&self, grace: Option<Duration>) {
        if let Some(g) = grace {
            let d = tokio::time::Instant::now() + g;
            let mut cur = self.deadline.lock();
            if (*cur).is_none_or(|c| d < c) {
                *cur = Some(d);
            }
        }
        self.token.cancel();
        self.changed.notify_waiters();
    }

    /// Resolves once a grace was set and has run out.
    async fn expired(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = *self.deadline.lock();
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => return,
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl AgentConfig {
    /// Defaults: one slot on `cpu`, cache in `cache_dir`.
    pub fn new(connect: ConnectOptions, cache_dir: PathBuf) -> Self {
        AgentConfig {
            connect,
            name: hostname(),
            slots: 1,
            devices: vec!["cpu".into()],
            cache_dir,
            poll_wait: Duration::from_secs(10),
            heartbeat: None,
            unreachable_timeout: Duration::from_secs(120),
            lease_latencies: None,
            job_end: None,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

/// What an agent did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Tasks whose result the coordinator accepted.
    pub accepted: u64,
    /// Results the coordinator dropped as duplicates.
    pub duplicates: u64,
    /// Tasks reported as failed.
    pub failed: u64,
    /// Tasks stopped because the coordinator said so (lease lost, experiment cancelled).
    pub stopped: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    stopped: AtomicU64,
}

/// Makes `dir` an existing, empty folder (removing what a previous task left in it).
fn empty_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let p = e?.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir),
        Err(e) => Err(e),
    }
}

/// A failed gRPC call as this crate's error.
fn rpc_error(call: &'static str, status: tonic::Status) -> WorkerError {
    WorkerError::Shared(SharedError::rpc(call, status))
}

fn retryable_status(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Internal
    )
}

/// Runs the agent until `shutdown` is cancelled (then drains) or a fatal error (wrong token, other
/// protocol version, coordinator unreachable for too long).
pub async fn run_agent(
    cfg: AgentConfig,
    trainer: Arc<dyn Trainer>,
    shutdown: CancellationToken,
) -> Result<AgentStats, WorkerError> {
    run_agent_with_drain(cfg, trainer, Drain::new(shutdown)).await
}

/// [`run_agent`] stopped by a [`Drain`] (which may bound how long running tasks get).
pub async fn run_agent_with_drain(
    cfg: AgentConfig,
    trainer: Arc<dyn Trainer>,
    drain: Drain,
) -> Result<AgentStats, WorkerError> {
    let shutdown = drain.token.clone();
    let clients = connect(&cfg.connect)?;
    let cache = ArtifactStore::open(&cfg.cache_dir.join("artifacts"))?;
    let work = cfg.cache_dir.join("work");
    std::fs::create_dir_all(&work).map_err(|e| WorkerError::io(&work, e))?;
    let reg = {
        let mut w = clients.worker.clone();
        let req = proto::RegisterRequest {
            protocol: clients.protocol,
            name: cfg.name.clone(),
            devices: cfg.devices.clone(),
            slots: cfg.slots,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let started = tokio::time::Instant::now();
        let mut warned: Option<tokio::time::Instant> = None;
        loop {
            match w.register(req.clone()).await {
                Ok(r) => break r.into_inner(),
                Err(s)
                    if retryable_status(&s)
                        && started.elapsed() < cfg.unreachable_timeout
                        && !shutdown.is_cancelled() =>
                {
                    // Say so at once and every 30 s, so that a wrong address does not look like a hang.
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        tracing::warn!(
                            "coordinator {} not reachable yet ({}); retrying for up to {} s",
                            cfg.connect.url,
                            s.message(),
                            cfg.unreachable_timeout
                                .saturating_sub(started.elapsed())
                                .as_secs()
                        );
                        warned = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => return Err(rpc_error("register", s)),
            }
        }
    };
    let heartbeat = cfg
        .heartbeat
        .unwrap_or(Duration::from_millis(reg.heartbeat_ms.max(100)));
    tracing::info!(worker = %reg.worker_id, slots = cfg.slots, "registered with {}", cfg.connect.url);
    let counters = Arc::new(Counters::default());
    // The slots live in a JoinSet owned by this future: if the agent's future is dropped or aborted
    // (an embedding program stops it, a test simulates a dead machine), every slot stops with it, and
    // with them the heartbeats, so the coordinator sees the leases expire. (A trainer call already
    // running on a blocking thread finishes, but its result has nowhere to go.)
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..cfg.slots.max(1) {
        let device = cfg
            .devices
            .get(slot as usize % cfg.devices.len().max(1))
            .cloned()
            .unwrap_or_else(|| "cpu".into());
        let ctx = SlotCtx {
            clients: clients.clone(),
            worker_id: reg.worker_id.clone(),
            slot,
            device,
            devices: cfg.devices.clone(),
            cache: cache.clone(),
            work: work.clone(),
            trainer: trainer.clone(),
            heartbeat,
            poll_wait: cfg.poll_wait,
            unreachable: cfg.unreachable_timeout,
            counters: counters.clone(),
            latencies: cfg.lease_latencies.clone(),
            drain: drain.clone(),
            job_end: cfg.job_end,
        };
        let sd = shutdown.clone();
        slots.spawn(async move { ctx.run(sd).await });
    }
    let mut first_err = None;
    while let Some(s) = slots.join_next().await {
        match s {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.cancel();
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(WorkerError::Agent(format!("slot task: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(AgentStats {
        accepted: counters.accepted.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        stopped: counters.stopped.load(Ordering::Relaxed),
    })
}

struct SlotCtx {
    clients: Clients,
    worker_id: String,
    slot: u32,
    device: String,
    /// The worker's whole device list (what gang leases index into).
    devices: Vec<String>,
    cache: ArtifactStore,
    work: PathBuf,
    trainer: Arc<dyn Trainer>,
    heartbeat: Duration,
    poll_wait: Duration,
    unreachable: Duration,
    counters: Arc<Counters>,
    latencies: Option<Arc<parking_lot::Mutex<Vec<u32>>>>,
    drain: Drain,
    job_end: Option<std::time::SystemTime>,
}

impl SlotCtx {
    async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let mut w = self.clients.worker.clone();
        let mut unreachable_since: Option<tokio::time::Instant> = None;
        // A task handed over with the previous completion (no separate lease round trip).
        let mut next: Option<proto::TaskLease> = None;
        loop {
            // A task already held is always run, also while draining (its lease would be lost otherwise).
            if let Some(t) = next.take() {
                next = self.run_task(t, &shutdown).await?;
                continue;
            }
            if shutdown.is_cancelled() {
                break;
            }
            let seconds_left = self.job_end.map(|end| {
                end.duration_since(std::time::SystemTime::now())
                    .map_or(0, |d| d.as_secs())
            });
            if seconds_left == Some(0) {
                tracing::info!("the batch job's time is up: no new task");
                break;
            }
            let req = proto::LeaseRequest {
                worker_id: self.worker_id.clone(),
                slot: self.slot,
                wait_ms: self.poll_wait.as_millis() as u64,
                devices: self.devices.clone(),
                seconds_left,
            };
            let asked = std::time::Instant::now();
            let reply = tokio::select! {
                r = w.lease(req) => r,
                _ = shutdown.cancelled() => break,
            };
            let task = match reply {
                Ok(r) => {
                    unreachable_since = None;
                    r.into_inner().task
                }
                Err(s) if retryable_status(&s) => {
                    let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > self.unreachable {
                        return Err(rpc_error("lease", s));
                    }
                    tracing::debug!("coordinator unreachable ({}), retrying", s.message());
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                Err(s) => return Err(rpc_error("lease", s)),
            };
            if let Some(t) = task {
                if let Some(l) = &self.latencies {
                    l.lock()
                        .push(asked.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                next = self.run_task(t, &shutdown).await?;
            }
        }
        Ok(())
    }

    /// Calls `f` until it succeeds or fails with a non-transient status (the coordinator may be
    /// restarting).
    async fn retry<T, F, Fut>(&self, call: &'static str, mut f: F) -> Result<T, WorkerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = tokio::time::Instant::now();
        loop {
            match f().await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable_status(&s) && started.elapsed() < self.unreachable => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(s) => return Err(rpc_error(call, s)),
            }
        }
    }

    /// The device string a granted task trains on: the slot's own device when the grant names none,
    /// else the named devices of this worker's list, joined (`cuda:0,cuda:1` for a gang lease).
    fn task_devices(&self, granted: &[u32]) -> Result<String, String> {
        if granted.is_empty() {
            return Ok(self.device.clone());
        }
        let names = granted
            .iter()
            .map(|&i| {
                self.devices.get(i as usize).cloned().ok_or_else(|| {
                    format!(
                        "the lease names device {i}, this worker has {} ({})",
                        self.devices.len(),
                        self.devices.join(",")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(mer_shared::device::join_devices(&names))
    }

    async fn fail(
        &self,
        t: &proto::TaskLease,
        error: String,
        retryable: bool,
    ) -> Result<Option<proto::TaskLease>, WorkerError> {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(task = %t.task_key, fold = %t.fold, "task failed: {error}");
        self.send_fail(t, error, retryable, false).await
    }

    /// Gives a task back unfinished because the worker was told to stop: the coordinator queues it
    /// again without counting a failure.
    async fn release_interrupted(
        &self,
        t: &proto::TaskLease,
    ) -> Result<Option<proto::TaskLease>, WorkerError> {
        self.counters.stopped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(task = %t.task_key, fold = %t.fold, "drain grace over: task released unfinished");
        let why = "the worker was told to stop (batch job time limit or preemption) and released it unfinished";
        self.send_fail(t, why.into(), true, true).await
    }

    /// The `Fail` call (retried while the coordinator is unreachable): a failure, or with
    /// `interrupted` a task released unfinished.
    async fn send_fail(
        &self,
        t: &proto::TaskLease,
        error: String,
        retryable: bool,
        interrupted: bool,
    ) -> Result<Option<proto::TaskLease>, WorkerError> {
        let req = proto::FailRequest {
            lease_id: t.lease_id.clone(),
            worker_id: self.worker_id.clone(),
            task_key: t.task_key.clone(),
            error,
            retryable,
            interrupted,
        };
        let w = self.clients.worker.clone();
        self.retry("fail", || {
            let mut w = w.clone();
            let req = req.clone();
            async move { w.fail(req).await }
        })
        .await?;
        Ok(None)
    }

    /// Runs one task and reports it; returns the next task when the coordinator handed one over with
    /// the completion.
    async fn run_task(
        &self,
        t: proto::TaskLease,
        shutdown: &CancellationToken,
    ) -> Result<Option<proto::TaskLease>, WorkerError> {
        let (spec, inputs) = match self.start_task(&t).await {
            Ok(s) => s,
            Err((error, retryable)) => return self.fail(&t, error, retryable).await,
        };
        let (result, told_to_stop, interrupting) = self.supervise(&t, spec, inputs).await;
        let reported = match result {
            Err(e) if told_to_stop => {
                tracing::info!(task = %t.task_key, "stopped: {e}");
                self.counters.stopped.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(_) if interrupting => self.release_interrupted(&t).await,
            Err(e) => self.fail(&t, e.message, e.retryable).await,
            Ok(output) => self.report(&t, output, !shutdown.is_cancelled()).await,
        };
        reported
    }

    /// The task a lease describes, with its inputs fetched; or why it cannot start (the failure's
    /// message and whether it is retryable).
    async fn start_task(
        &self,
        t: &proto::TaskLease,
    ) -> Result<(TaskSpec, TaskInputs), (String, bool)> {
        let payload: TaskPayload = match serde_json::from_str(&t.payload_json) {
            Ok(p) => p,
            Err(e) => {
                return Err((
                    format!("task payload is not valid (protocol {PROTOCOL_VERSION}): {e}"),
                    false,
                ))
            }
        };
        let kind = match t.kind.parse::<TaskKind>() {
            Ok(k) => k,
            Err(e) => return Err((e, false)),
        };
        let device = match self.task_devices(&t.devices) {
            Ok(d) => d,
            Err(e) => return Err((e, false)),
        };
        let (dataset, prior_checkpoint, files) = self.fetch_inputs(t, &payload).await?;
        // One scratch folder per slot, emptied before each task (cheaper than a folder per task).
        let work_dir = self.work.join(format!(
            "{}-{}-{}",
            std::process::id(),
            self.worker_id
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
            self.slot
        ));
        let spec = TaskSpec {
            key: t.task_key.clone(),
            kind,
            fold: t.fold.clone(),
            sweep_point: t.sweep_point,
            attempt: t.attempt,
            payload,
        };
        let inputs = TaskInputs {
            dataset,
            prior_checkpoint,
            work_dir: work_dir.clone(),
            device,
            files,
        };
        Ok((spec, inputs))
    }

    /// Fetches a task's inputs (cached, hash-checked): the dataset, the prior checkpoint if any, and a
    /// user method's files; or why not (the failure's message, retryable).
    async fn fetch_inputs(
        &self,
        t: &proto::TaskLease,
        payload: &TaskPayload,
    ) -> Result<FetchedInputs, (String, bool)> {
        // Inputs (cached, hash-checked).
        let dataset = match download_to(&self.clients, &t.dataset_hash, &self.cache).await {
            Ok(p) => p,
            Err(e) => {
                return Err((format!("fetching dataset {}: {e}", t.dataset_hash), true));
            }
        };
        let prior_checkpoint = if t.prior_checkpoint.is_empty() {
            None
        } else {
            match download_to(&self.clients, &t.prior_checkpoint, &self.cache).await {
                Ok(p) => Some(p),
                Err(e) => {
                    return Err((
                        format!("fetching prior checkpoint {}: {e}", t.prior_checkpoint),
                        true,
                    ));
                }
            }
        };
        // A user method's files, each fetched by its hash (cached, hash-checked like the dataset).
        let mut files = Vec::new();
        if let Some(mer_shared::method::BaselineSettings::User(u)) = &payload.baseline {
            for f in &u.files {
                match download_to(&self.clients, &f.sha256, &self.cache).await {
                    Ok(p) => files.push((f.path.clone(), p)),
                    Err(e) => {
                        return Err((
                            format!(
                                "fetching file {} of method {} ({}): {e}",
                                f.path, u.name, f.sha256
                            ),
                            true,
                        ));
                    }
                }
            }
        }
        Ok((dataset, prior_checkpoint, files))
    }

    /// Runs the task on a blocking thread and heartbeats its progress until it ends, cancelling it when
    /// the coordinator says stop or the drain grace runs out. Returns its result, whether the
    /// coordinator said stop, and whether the drain interrupted it.
    async fn supervise(
        &self,
        t: &proto::TaskLease,
        spec: TaskSpec,
        inputs: TaskInputs,
    ) -> (Result<TaskOutput, TrainerError>, bool, bool) {
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(parking_lot::Mutex::new(Progress {
            stage: t.kind.clone(),
            ..Progress::default()
        }));
        let trainer = self.trainer.clone();
        let (c2, p2) = (cancel.clone(), progress.clone());
        // File-system work stays off the async threads: the scratch folder is made and removed here.
        let mut job = tokio::task::spawn_blocking(move || {
            empty_dir(&inputs.work_dir).map_err(|e| {
                TrainerError::retryable(format!("{}: {e}", inputs.work_dir.display()))
            })?;
            let mut cb = |p: Progress| *p2.lock() = p;
            trainer.run(&spec, &inputs, &mut cb, &c2)
        });
        // Heartbeats while it runs.
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        let mut w = self.clients.worker.clone();
        let mut told_to_stop = false;
        let mut interrupting = false;
        let out = loop {
            tokio::select! {
                r = &mut job => break r,
                _ = self.drain.expired(), if !interrupting => {
                    interrupting = true;
                    cancel.store(true, Ordering::Relaxed);
                }
                _ = tick.tick() => {
                    let p = progress.lock().clone();
                    let req = proto::HeartbeatRequest {
                        lease_id: t.lease_id.clone(), worker_id: self.worker_id.clone(), task_key: t.task_key.clone(),
                        stage: p.stage, epoch: p.epoch, epochs: p.epochs, loss: p.loss, samples_per_s: p.samples_per_s,
                        device: p.device, gpu_memory_bytes: p.gpu_memory_bytes, devices: t.devices.clone(),
                    };
                    match w.heartbeat(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            if !r.keep_going && !told_to_stop {
                                tracing::warn!(task = %t.task_key, "coordinator says stop: {}", r.reason);
                                told_to_stop = true;
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(s) => tracing::debug!("heartbeat failed ({}); the coordinator may be restarting", s.message()),
                    }
                }
            }
        };
        let result = match out {
            Ok(r) => r,
            Err(e) => Err(TrainerError::retryable(format!(
                "the trainer panicked: {e}"
            ))),
        };
        (result, told_to_stop, interrupting)
    }

    async fn report(
        &self,
        t: &proto::TaskLease,
        output: TaskOutput,
        lease_next: bool,
    ) -> Result<Option<proto::TaskLease>, WorkerError> {
        let mut req = proto::CompleteRequest {
            lease_id: t.lease_id.clone(),
            worker_id: self.worker_id.clone(),
            task_key: t.task_key.clone(),
            lease_next,
            slot: self.slot,
            ..Default::default()
        };
        match output {
            TaskOutput::Target(fr) => {
                let k = fr.confusion.classes() as u32;
                req.confusion = Some(proto::ConfusionCounts {
                    classes: k,
                    counts: fr.confusion.rows().iter().flatten().copied().collect(),
                });
                req.fold_result_json = match serde_json::to_string(&fr) {
                    Ok(j) => j,
                    Err(e) => {
                        return self
                            .fail(t, format!("cannot encode the fold result: {e}"), true)
                            .await
                    }
                };
            }
            TaskOutput::Prior { checkpoint } => {
                let started = tokio::time::Instant::now();
                req.checkpoint_hash = loop {
                    match upload_file(&self.clients, &checkpoint, "checkpoint").await {
                        Ok(h) => break h,
                        Err(SharedError::Rpc { code, .. })
                            if matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown)
                                && started.elapsed() < self.unreachable =>
                        {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => {
                            return self
                                .fail(t, format!("uploading checkpoint: {e}"), true)
                                .await
                        }
                    }
                };
            }
        }
        let w = self.clients.worker.clone();
        let asked = std::time::Instant::now();
        let reply = self
            .retry("complete", || {
                let mut w = w.clone();
                let req = req.clone();
                async move { w.complete(req).await }
            })
            .await;
        let next = match reply {
            Ok(r) => {
                if r.outcome == "duplicate" {
                    self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(task = %t.task_key, "result was a duplicate (another worker finished first)");
                } else {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(_), Some(l)) = (&r.next, &self.latencies) {
                    l.lock()
                        .push(asked.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                r.next
            }
            Err(WorkerError::Shared(SharedError::Rpc {
                code: tonic::Code::InvalidArgument,
                message,
                ..
            })) => {
                // The coordinator refused the result as invalid: report it as a failure of this attempt.
                return self
                    .fail(t, format!("result refused: {message}"), true)
                    .await;
            }
            Err(e) => return Err(e),
        };
        Ok(next)
    }
}
