//! Prometheus metrics of the coordinator (the `prometheus` crate, one private [`Registry`] per
//! coordinator so that tests can run several side by side).
//!
//! Two kinds of series:
//! - **event counters and histograms** (leases granted/expired, attempts, retries, workers lost, task
//!   durations): the scheduler calls the `on_*` hooks of [`Metrics`] at the moment the event happens;
//! - **state gauges** (tasks by state and kind, connected workers, free slots, per-worker throughput and
//!   GPU memory, experiment progress, final UF1/UAR per sweep point): refreshed from a
//!   [`ClusterSnapshot`] of the coordinator's state on every scrape ([`Metrics::render`]), so the numbers
//!   on `/metrics` are the scheduler's numbers at scrape time, never a second bookkeeping that can drift.
//!
//! The coordinator's state is reached through the small [`ClusterState`] trait; the HTTP side
//! (`/metrics`, `/healthz`, `/readyz`) lives in [`crate::rpc::http`]. The metric names are documented in
//! docs/kubernetes.md ("Metrics reference").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::CoordError;

/// Buckets of `mer_task_duration_seconds`: a synthetic task takes seconds, a paper-size fold hours.
pub const DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 86400.0,
];

/// Task states that always appear in `mer_tasks` (with 0 when empty), so dashboards see every series.
pub const TASK_STATES: &[&str] = &crate::task_state::TaskState::PUBLIC_NAMES;
/// Task kinds that always appear in `mer_tasks`.
pub const TASK_KINDS: &[&str] = &["prior", "target"];

/// How many tasks are in one state, for one task kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCount {
    /// Task state (`blocked`, `ready`, `running`, `done`, `failed`).
    pub state: String,
    /// Task kind (`prior` or `target`).
    pub kind: String,
    /// Number of tasks.
    pub count: u64,
}

/// One connected worker as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerSnapshot {
    /// The worker id given at registration.
    pub id: String,
    /// The name the worker announced (host or pod name).
    pub name: String,
    /// Training slots it announced.
    pub slots: u32,
    /// Slots holding a lease right now.
    pub busy: u32,
    /// Devices it announced (0 while unknown).
    pub devices: u32,
    /// Devices held by gang leases (tasks with `train.devices_per_task > 1`) right now.
    pub devices_gang: u32,
    /// Training throughput of its running tasks (sum over slots, last heartbeat), samples/s.
    pub samples_per_s: f64,
    /// GPU memory in use by device name (`cuda:0`...), from the last heartbeat of the tasks it runs
    /// (the largest where several slots share a device); empty for CPU workers and idle ones.
    pub gpu_memory_bytes: Vec<(String, u64)>,
}

/// Final scores of one sweep point (only reported once all its folds are done).
#[derive(Debug, Clone, PartialEq)]
pub struct PointScore {
    /// Sweep point index.
    pub point: u32,
    /// Sweep point label (`alpha=2,frozen=3`...).
    pub label: String,
    /// `all` for the pooled composite, else the dataset part (`smic`, `casme2`, `samm`).
    pub part: String,
    /// Pooled unweighted F1.
    pub uf1: f64,
    /// Pooled unweighted average recall.
    pub uar: f64,
}

/// Progress of one experiment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExperimentSnapshot {
    /// Experiment id.
    pub id: String,
    /// Experiment name from its spec.
    pub name: String,
    /// `running`, `done`, `failed`, `cancelled`.
    pub state: String,
    /// Target folds finished (over all sweep points).
    pub folds_done: u64,
    /// Target folds in the plan (over all sweep points).
    pub folds_total: u64,
    /// Final scores of the finished sweep points.
    pub scores: Vec<PointScore>,
}

/// Everything the state gauges show, taken at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterSnapshot {
    /// Task counts by state and kind.
    pub tasks: Vec<TaskCount>,
    /// Connected workers.
    pub workers: Vec<WorkerSnapshot>,
    /// Known experiments.
    pub experiments: Vec<ExperimentSnapshot>,
    /// Ready tasks of running experiments that need more devices than any registered worker has.
    pub unplaceable: u64,
}

impl ClusterSnapshot {
    /// Total tasks in `state` (all kinds).
    pub fn tasks_in(&self, state: &str) -> u64 {
        self.tasks
            .iter()
            .filter(|t| t.state == state)
            .map(|t| t.count)
            .sum()
    }

    /// Free training slots over all connected workers.
    pub fn free_slots(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| u64::from(w.slots.saturating_sub(w.busy)))
            .sum()
    }
}

/// Readiness of the coordinator as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The state database is open and answers.
    pub store_open: bool,
    /// The gRPC server is bound and serving.
    pub grpc_serving: bool,
}

impl Readiness {
    /// Whether the coordinator can take traffic.
    pub fn ready(&self) -> bool {
        self.store_open && self.grpc_serving
    }
}

/// What the metrics and health endpoints need from the coordinator. The scheduler implements it.
pub trait ClusterState: Send + Sync + 'static {
    /// The current task/worker/experiment numbers.
    fn snapshot(&self) -> Result<ClusterSnapshot, CoordError>;
    /// Whether the store is open and gRPC is serving.
    fn readiness(&self) -> Readiness;
}

/// The coordinator's metric families, registered in their own [`Registry`].
pub struct Metrics {
    registry: Registry,
    tasks: IntGaugeVec,
    leases_granted: IntCounterVec,
    leases_expired: IntCounterVec,
    attempts: IntCounterVec,
    retries: IntCounterVec,
    workers_lost: IntCounterVec,
    slurm_submissions: IntCounterVec,
    slurm_preemptions: IntCounter,
    task_duration: HistogramVec,
    workers_connected: IntGauge,
    slots_total: IntGauge,
    slots_free: IntGauge,
    worker_samples: GaugeVec,
    worker_gpu_mem: GaugeVec,
    worker_devices: IntGaugeVec,
    tasks_unplaceable: IntGauge,
    folds_done: IntGaugeVec,
    folds_total: IntGaugeVec,
    point_uf1: GaugeVec,
    point_uar: GaugeVec,
    scrape_errors: IntCounter,
    /// Live leases: kind and grant time, for the duration histogram.
    leases: Mutex<HashMap<String, (String, Instant)>>,
    /// Final per-point scores by experiment id (set when results are aggregated).
    scores: Mutex<BTreeMap<String, Vec<PointScore>>>,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> Result<C, CoordError> {
    r.register(Box::new(c.clone())).map_err(prom_err)?;
    Ok(c)
}

fn prom_err(e: prometheus::Error) -> CoordError {
    CoordError::Runtime(format!("prometheus: {e}"))
}

impl Metrics {
    /// Creates and registers every metric family (names prefixed `mer_`).
    pub fn new() -> Result<Arc<Metrics>, CoordError> {
        let r = Registry::new();
        let opts = |n: &str, h: &str| Opts::new(n, h);
        let m = Metrics {
            tasks: reg(&r, IntGaugeVec::new(opts("mer_tasks", "Tasks by state and kind."), &["state", "kind"]).map_err(prom_err)?)?,
            leases_granted: reg(
                &r,
                IntCounterVec::new(opts("mer_leases_granted_total", "Task leases handed to workers."), &["kind"]).map_err(prom_err)?,
            )?,
            leases_expired: reg(
                &r,
                IntCounterVec::new(opts("mer_leases_expired_total", "Leases that expired without a heartbeat (task re-queued)."), &["kind"])
                    .map_err(prom_err)?,
            )?,
            attempts: reg(
                &r,
                IntCounterVec::new(opts("mer_task_attempts_total", "Task attempts started (one per lease)."), &["kind"]).map_err(prom_err)?,
            )?,
            retries: reg(
                &r,
                IntCounterVec::new(
                    opts("mer_task_retries_total", "Attempts that failed or were lost and put the task back in the queue."),
                    &["kind", "reason"],
                )
                .map_err(prom_err)?,
            )?,
            workers_lost: reg(
                &r,
                IntCounterVec::new(
                    opts("mer_workers_lost_total", "Workers declared lost (lease expiry or a failed pod seen by the Kubernetes launcher)."),
                    &["source"],
                )
                .map_err(prom_err)?,
            )?,
            slurm_submissions: reg(
                &r,
                IntCounterVec::new(
                    opts("mer_slurm_submissions_total", "Worker job arrays the Slurm launcher submitted (outcome ok) or failed to submit (outcome failed)."),
                    &["outcome"],
                )
                .map_err(prom_err)?,
            )?,
            slurm_preemptions: reg(
                &r,
                IntCounter::with_opts(opts(
                    "mer_slurm_preemptions_total",
                    "Slurm array elements seen requeued (preempted, or requeued by hand) while running.",
                ))
                .map_err(prom_err)?,
            )?,
            task_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("mer_task_duration_seconds", "Wall time of finished task attempts, lease to result.")
                        .buckets(DURATION_BUCKETS.to_vec()),
                    &["kind", "outcome"],
                )
                .map_err(prom_err)?,
            )?,
            workers_connected: reg(&r, IntGauge::with_opts(opts("mer_workers_connected", "Registered workers that are alive.")).map_err(prom_err)?)?,
            slots_total: reg(&r, IntGauge::with_opts(opts("mer_worker_slots", "Training slots of the connected workers.")).map_err(prom_err)?)?,
            slots_free: reg(
                &r,
                IntGauge::with_opts(opts("mer_worker_slots_free", "Training slots of the connected workers without a lease.")).map_err(prom_err)?,
            )?,
            worker_samples: reg(
                &r,
                GaugeVec::new(opts("mer_worker_samples_per_second", "Training throughput reported by each worker (last heartbeat)."), &["worker"])
                    .map_err(prom_err)?,
            )?,
            worker_gpu_mem: reg(
                &r,
                GaugeVec::new(opts("mer_worker_gpu_memory_bytes", "GPU memory in use reported by each worker."), &["worker", "device"])
                    .map_err(prom_err)?,
            )?,
            worker_devices: reg(
                &r,
                IntGaugeVec::new(
                    opts("mer_worker_devices", "Devices of each worker: all it announced (state=total) and those held by gang leases of tasks with train.devices_per_task > 1 (state=gang_leased)."),
                    &["worker", "state"],
                )
                .map_err(prom_err)?,
            )?,
            tasks_unplaceable: reg(
                &r,
                IntGauge::with_opts(opts(
                    "mer_tasks_unplaceable",
                    "Ready tasks that need more devices (train.devices_per_task) than any registered worker has; they wait, and status says why.",
                ))
                .map_err(prom_err)?,
            )?,
            folds_done: reg(
                &r,
                IntGaugeVec::new(opts("mer_experiment_folds_done", "Target folds finished per experiment (all sweep points)."), &["experiment", "name"])
                    .map_err(prom_err)?,
            )?,
            folds_total: reg(
                &r,
                IntGaugeVec::new(opts("mer_experiment_folds_planned", "Target folds planned per experiment (all sweep points)."), &["experiment", "name"])
                    .map_err(prom_err)?,
            )?,
            point_uf1: reg(
                &r,
                GaugeVec::new(
                    opts("mer_sweep_point_uf1", "Final pooled UF1 of a finished sweep point (part=all for the composite)."),
                    &["experiment", "point", "label", "part"],
                )
                .map_err(prom_err)?,
            )?,
            point_uar: reg(
                &r,
                GaugeVec::new(
                    opts("mer_sweep_point_uar", "Final pooled UAR of a finished sweep point (part=all for the composite)."),
                    &["experiment", "point", "label", "part"],
                )
                .map_err(prom_err)?,
            )?,
            scrape_errors: reg(
                &r,
                IntCounter::with_opts(opts("mer_metrics_snapshot_errors_total", "Scrapes where the coordinator state could not be read.")).map_err(prom_err)?,
            )?,
            registry: r,
            leases: Mutex::new(HashMap::new()),
            scores: Mutex::new(BTreeMap::new()),
        };
        // Counters start visible at 0 for both kinds so rate() works from the first scrape.
        for k in TASK_KINDS {
            m.leases_granted.with_label_values(&[k]);
            m.leases_expired.with_label_values(&[k]);
            m.attempts.with_label_values(&[k]);
        }
        Ok(Arc::new(m))
    }

    /// The registry (to add process metrics or to gather in tests).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Lease `lease_id` of a `kind` task was granted: one more attempt; its clock starts.
    pub fn on_lease_granted(&self, lease_id: &str, kind: &str) {
        self.leases_granted.with_label_values(&[kind]).inc();
        self.attempts.with_label_values(&[kind]).inc();
        self.leases
            .lock()
            .insert(lease_id.to_string(), (kind.to_string(), Instant::now()));
    }

    /// Lease `lease_id` expired without a heartbeat: its task goes back to the queue (or gives up).
    pub fn on_lease_expired(&self, lease_id: &str) {
        if let Some((kind, since)) = self.leases.lock().remove(lease_id) {
            self.leases_expired
                .with_label_values(&[kind.as_str()])
                .inc();
            self.retries
                .with_label_values(&[kind.as_str(), "expired"])
                .inc();
            self.task_duration
                .with_label_values(&[kind.as_str(), "lost"])
                .observe(since.elapsed().as_secs_f64());
        }
    }

    /// Lease `lease_id` ended with `outcome`: `done` (result stored), `retry` (reported failure, the task
    /// is queued again), `gave_up` (failure, no attempt left) or `interrupted` (released unfinished by a
    /// worker told to stop; queued again, no attempt counted).
    pub fn on_lease_ended(&self, lease_id: &str, outcome: &str) {
        if let Some((kind, since)) = self.leases.lock().remove(lease_id) {
            let o = match outcome {
                "done" => "done",
                "interrupted" => "interrupted",
                _ => "failed",
            };
            self.task_duration
                .with_label_values(&[kind.as_str(), o])
                .observe(since.elapsed().as_secs_f64());
            if outcome == "retry" || outcome == "interrupted" {
                let why = if outcome == "retry" {
                    "failed"
                } else {
                    "interrupted"
                };
                self.retries.with_label_values(&[kind.as_str(), why]).inc();
            }
        }
    }

    /// The Slurm launcher ran `sbatch`: `ok` says whether it gave a job id.
    pub fn on_slurm_submission(&self, ok: bool) {
        self.slurm_submissions
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// The Slurm launcher saw `n` more requeues (preemptions) of array elements.
    pub fn on_slurm_preemptions(&self, n: u64) {
        self.slurm_preemptions.inc_by(n);
    }

    /// A worker was declared lost; `source` is `kubernetes` (failed pod) or `api` (a client said so).
    pub fn on_worker_lost(&self, source: &str) {
        self.workers_lost.with_label_values(&[source]).inc();
    }

    /// Records the final per-point scores of an experiment (from its aggregated results).
    pub fn set_final_scores(&self, experiment_id: &str, scores: Vec<PointScore>) {
        self.scores.lock().insert(experiment_id.to_string(), scores);
    }

    /// The final per-point scores recorded for an experiment.
    pub fn final_scores(&self, experiment_id: &str) -> Vec<PointScore> {
        self.scores
            .lock()
            .get(experiment_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets every state gauge from `s` (series of workers/experiments that are gone disappear).
    pub fn refresh(&self, s: &ClusterSnapshot) {
        self.tasks.reset();
        for st in TASK_STATES {
            for k in TASK_KINDS {
                self.tasks.with_label_values(&[st, k]).set(0);
            }
        }
        for t in &s.tasks {
            self.tasks
                .with_label_values(&[t.state.as_str(), t.kind.as_str()])
                .add(clamp_i64(t.count));
        }
        self.workers_connected
            .set(clamp_i64(s.workers.len() as u64));
        self.slots_total.set(clamp_i64(
            s.workers.iter().map(|w| u64::from(w.slots)).sum(),
        ));
        self.slots_free.set(clamp_i64(s.free_slots()));
        self.worker_samples.reset();
        self.worker_gpu_mem.reset();
        self.worker_devices.reset();
        self.tasks_unplaceable.set(clamp_i64(s.unplaceable));
        for w in &s.workers {
            self.worker_devices
                .with_label_values(&[w.id.as_str(), "total"])
                .set(i64::from(w.devices));
            self.worker_devices
                .with_label_values(&[w.id.as_str(), "gang_leased"])
                .set(i64::from(w.devices_gang));
            self.worker_samples
                .with_label_values(&[w.id.as_str()])
                .set(w.samples_per_s);
            for (dev, bytes) in &w.gpu_memory_bytes {
                self.worker_gpu_mem
                    .with_label_values(&[w.id.as_str(), dev.as_str()])
                    .set(*bytes as f64);
            }
        }
        self.folds_done.reset();
        self.folds_total.reset();
        self.point_uf1.reset();
        self.point_uar.reset();
        for e in &s.experiments {
            self.folds_done
                .with_label_values(&[e.id.as_str(), e.name.as_str()])
                .set(clamp_i64(e.folds_done));
            self.folds_total
                .with_label_values(&[e.id.as_str(), e.name.as_str()])
                .set(clamp_i64(e.folds_total));
            for p in &e.scores {
                let point = p.point.to_string();
                let l = [
                    e.id.as_str(),
                    point.as_str(),
                    p.label.as_str(),
                    p.part.as_str(),
                ];
                self.point_uf1.with_label_values(&l).set(p.uf1);
                self.point_uar.with_label_values(&l).set(p.uar);
            }
        }
    }

    /// Refreshes the gauges from `state` and encodes every family in the Prometheus text format
    /// (version 0.0.4). A state that cannot be read keeps the last gauges and counts a snapshot error.
    pub fn render(&self, state: &dyn ClusterState) -> Result<String, CoordError> {
        match state.snapshot() {
            Ok(s) => self.refresh(&s),
            Err(e) => {
                tracing::warn!("metrics: cannot read the coordinator state: {e}");
                self.scrape_errors.inc();
            }
        }
        self.encode()
    }

    /// Encodes the current values without refreshing.
    pub fn encode(&self) -> Result<String, CoordError> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(prom_err)?;
        String::from_utf8(buf)
            .map_err(|e| CoordError::Runtime(format!("prometheus text is not UTF-8: {e}")))
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Parses a Prometheus text exposition into `(name{labels}, value)` pairs, for tests and `mer status`.
/// Comment lines are skipped; a malformed line is an error naming it.
pub fn parse_text(text: &str) -> Result<Vec<(String, f64)>, CoordError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| {
            CoordError::invalid(
                format!("metrics line {}", i + 1),
                format!("no value in '{line}'"),
            )
        })?;
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|e| {
                CoordError::invalid(
                    format!("metrics line {}", i + 1),
                    format!("value '{v}': {e}"),
                )
            })?,
        };
        out.push((series.to_string(), v));
    }
    Ok(out)
}

/// The value of the series `name` whose labels include every `labels` pair (summed over the matches),
/// `None` when no series matches.
pub fn series_value(parsed: &[(String, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (series, v) in parsed {
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series.as_str(), ""),
        };
        if n != name {
            continue;
        }
        let have = split_labels(rest);
        if labels
            .iter()
            .all(|(k, val)| have.iter().any(|(hk, hv)| hk == k && hv == val))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Splits `k1="v1",k2="v2"` into pairs, honouring `\"` and `\\` escapes and commas inside values.
fn split_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    loop {
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim_start_matches(',')
            .trim()
            .to_string();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => val.push(c),
            }
        }
        out.push((key, val));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(ClusterSnapshot);
    impl ClusterState for Fixed {
        fn snapshot(&self) -> Result<ClusterSnapshot, CoordError> {
            Ok(self.0.clone())
        }
        fn readiness(&self) -> Readiness {
            Readiness {
                store_open: true,
                grpc_serving: true,
            }
        }
    }

    fn snap() -> ClusterSnapshot {
        ClusterSnapshot {
            tasks: vec![
                TaskCount {
                    state: "ready".into(),
                    kind: "target".into(),
                    count: 5,
                },
                TaskCount {
                    state: "running".into(),
                    kind: "prior".into(),
                    count: 2,
                },
                TaskCount {
                    state: "done".into(),
                    kind: "prior".into(),
                    count: 3,
                },
            ],
            workers: vec![
                WorkerSnapshot {
                    id: "w1".into(),
                    name: "pod-a".into(),
                    slots: 2,
                    busy: 2,
                    devices: 2,
                    devices_gang: 2,
                    samples_per_s: 40.5,
                    gpu_memory_bytes: vec![("cuda:0".into(), 1 << 30)],
                },
                WorkerSnapshot {
                    id: "w2".into(),
                    name: "pod-b".into(),
                    slots: 4,
                    busy: 1,
                    devices: 1,
                    devices_gang: 0,
                    samples_per_s: 0.0,
                    gpu_memory_bytes: vec![],
                },
            ],
            experiments: vec![ExperimentSnapshot {
                id: "e1".into(),
                name: "composite".into(),
                state: "running".into(),
                folds_done: 3,
                folds_total: 68,
                scores: vec![PointScore {
                    point: 0,
                    label: "alpha=2".into(),
                    part: "all".into(),
                    uf1: 0.71,
                    uar: 0.69,
                }],
            }],
            unplaceable: 4,
        }
    }

    #[test]
    fn render_reflects_the_snapshot() {
        let m = Metrics::new().unwrap();
        let text = m.render(&Fixed(snap())).unwrap();
        let p = parse_text(&text).unwrap();
        assert_eq!(
            series_value(&p, "mer_tasks", &[("state", "ready"), ("kind", "target")]),
            Some(5.0)
        );
        assert_eq!(
            series_value(&p, "mer_tasks", &[("state", "running")]),
            Some(2.0)
        );
        assert_eq!(
            series_value(&p, "mer_tasks", &[("state", "failed"), ("kind", "prior")]),
            Some(0.0)
        );
        assert_eq!(series_value(&p, "mer_workers_connected", &[]), Some(2.0));
        assert_eq!(series_value(&p, "mer_worker_slots", &[]), Some(6.0));
        assert_eq!(series_value(&p, "mer_worker_slots_free", &[]), Some(3.0));
        assert_eq!(
            series_value(&p, "mer_worker_samples_per_second", &[("worker", "w1")]),
            Some(40.5)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_worker_gpu_memory_bytes",
                &[("worker", "w1"), ("device", "cuda:0")]
            ),
            Some(1073741824.0)
        );
        assert_eq!(
            series_value(&p, "mer_experiment_folds_planned", &[("experiment", "e1")]),
            Some(68.0)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_sweep_point_uf1",
                &[("point", "0"), ("part", "all")]
            ),
            Some(0.71)
        );
        assert_eq!(
            series_value(&p, "mer_sweep_point_uar", &[("label", "alpha=2")]),
            Some(0.69)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_worker_devices",
                &[("worker", "w1"), ("state", "gang_leased")]
            ),
            Some(2.0)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_worker_devices",
                &[("worker", "w2"), ("state", "total")]
            ),
            Some(1.0)
        );
        assert_eq!(series_value(&p, "mer_tasks_unplaceable", &[]), Some(4.0));
    }

    #[test]
    fn gone_workers_disappear_and_counters_accumulate() {
        let m = Metrics::new().unwrap();
        m.refresh(&snap());
        let mut s = snap();
        s.workers.truncate(1);
        m.on_lease_granted("l1", "target");
        m.on_lease_granted("l2", "target");
        m.on_lease_granted("l3", "prior");
        m.on_lease_granted("l4", "prior");
        m.on_lease_expired("l1");
        m.on_lease_expired("l1");
        m.on_lease_ended("l2", "retry");
        m.on_lease_ended("l3", "done");
        m.on_lease_ended("unknown", "done");
        m.on_worker_lost("kubernetes");
        let p = parse_text(&m.render(&Fixed(s)).unwrap()).unwrap();
        assert_eq!(
            series_value(&p, "mer_worker_samples_per_second", &[("worker", "w2")]),
            None
        );
        assert_eq!(
            series_value(&p, "mer_leases_granted_total", &[("kind", "target")]),
            Some(2.0)
        );
        assert_eq!(
            series_value(&p, "mer_task_attempts_total", &[("kind", "target")]),
            Some(2.0)
        );
        assert_eq!(
            series_value(&p, "mer_leases_expired_total", &[("kind", "prior")]),
            Some(0.0)
        );
        assert_eq!(
            series_value(&p, "mer_leases_expired_total", &[("kind", "target")]),
            Some(1.0),
            "a lease expires once"
        );
        assert_eq!(
            series_value(&p, "mer_task_retries_total", &[("reason", "expired")]),
            Some(1.0)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_task_retries_total",
                &[("kind", "target"), ("reason", "failed")]
            ),
            Some(1.0)
        );
        assert_eq!(
            series_value(&p, "mer_workers_lost_total", &[("source", "kubernetes")]),
            Some(1.0)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_task_duration_seconds_count",
                &[("kind", "prior"), ("outcome", "done")]
            ),
            Some(1.0)
        );
        assert_eq!(
            series_value(
                &p,
                "mer_task_duration_seconds_bucket",
                &[("kind", "prior"), ("le", "1")]
            ),
            Some(1.0)
        );
        assert_eq!(
            series_value(&p, "mer_task_duration_seconds_count", &[("kind", "target")]),
            Some(2.0),
            "lost + failed"
        );
        m.set_final_scores(
            "e1",
            vec![PointScore {
                point: 1,
                label: "a".into(),
                part: "smic".into(),
                uf1: 0.5,
                uar: 0.4,
            }],
        );
        assert_eq!(m.final_scores("e1").len(), 1);
    }

    #[test]
    fn a_failing_snapshot_counts_an_error_and_keeps_serving() {
        struct Broken;
        impl ClusterState for Broken {
            fn snapshot(&self) -> Result<ClusterSnapshot, CoordError> {
                Err(CoordError::Runtime("store closed".into()))
            }
            fn readiness(&self) -> Readiness {
                Readiness {
                    store_open: false,
                    grpc_serving: true,
                }
            }
        }
        let m = Metrics::new().unwrap();
        let p = parse_text(&m.render(&Broken).unwrap()).unwrap();
        assert_eq!(
            series_value(&p, "mer_metrics_snapshot_errors_total", &[]),
            Some(1.0)
        );
        assert!(!Broken.readiness().ready());
    }

    #[test]
    fn labels_with_commas_and_quotes_are_split() {
        let l = split_labels(r#"experiment="e1",label="alpha=2,frozen=3",part="a\"b""#);
        assert_eq!(
            l,
            vec![
                ("experiment".into(), "e1".into()),
                ("label".into(), "alpha=2,frozen=3".into()),
                ("part".into(), "a\"b".into())
            ]
        );
    }

    #[test]
    fn parse_text_names_a_bad_line() {
        let e = parse_text("# HELP x y\nmer_x 1\nmer_y abc\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics line 3"), "{e}");
    }
}
