//! What the observability side reads from the scheduler, and the "worker lost" entry point of the
//! Kubernetes launcher's pod watch (a child module of `scheduler` so that it reads the hot state
//! directly, under the same lock, without a second bookkeeping).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{placement, views, ExpState, Scheduler};
use crate::metrics::{
    ClusterSnapshot, ClusterState, ExperimentSnapshot, Metrics, Readiness, TaskCount,
    WorkerSnapshot,
};
use crate::CoordError;

/// A worker that neither long-polled for a lease nor sent a heartbeat for this long (and holds no
/// lease) is not counted as connected.
pub const WORKER_SEEN_WINDOW: Duration = Duration::from_secs(60);

impl Scheduler {
    /// The scheduler's metric families (event counters are fed by the scheduler itself).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Marks a worker as seen now (lease polls and heartbeats call it).
    pub(super) fn touch_worker(&self, worker: &str) {
        if let Some(w) = self.inner.lock().workers.get_mut(worker) {
            w.last_seen = Instant::now();
        }
    }

    /// Task counts by state and kind, connected workers with their slots and throughput, and each
    /// experiment's fold progress and final scores, all read at one instant.
    pub fn metrics_snapshot(&self) -> ClusterSnapshot {
        let now = Instant::now();
        let (tasks, workers, ids, unplaceable) = {
            let inner = self.inner.lock();
            let mut counts: std::collections::BTreeMap<(&'static str, &'static str), u64> =
                Default::default();
            for t in &inner.tasks {
                *counts
                    .entry((t.state.public_name(), t.def.kind.key()))
                    .or_default() += 1;
            }
            let tasks: Vec<TaskCount> = counts
                .into_iter()
                .map(|((state, kind), count)| TaskCount {
                    state: state.into(),
                    kind: kind.into(),
                    count,
                })
                .collect();
            let mut workers: Vec<WorkerSnapshot> = Vec::new();
            for (id, w) in &inner.workers {
                let held: Vec<_> = inner
                    .leases
                    .iter()
                    .filter(|(_, l)| l.worker == *id)
                    .map(|(_, l)| l)
                    .collect();
                if held.is_empty() && now.duration_since(w.last_seen) > WORKER_SEEN_WINDOW {
                    continue;
                }
                let busy = u32::try_from(held.len()).unwrap_or(u32::MAX);
                // Slots sharing a device all read the same device-wide counter, at slightly different
                // moments: the latest high-water mark of them stands for the device.
                let mut gpu: std::collections::BTreeMap<String, u64> = Default::default();
                for l in &held {
                    if let Some(b) = l.progress.gpu_memory_bytes {
                        let dev = if l.progress.device.is_empty() {
                            "cuda".to_string()
                        } else {
                            l.progress.device.clone()
                        };
                        let e = gpu.entry(dev).or_default();
                        *e = (*e).max(b);
                    }
                }
                let usage = placement::DeviceUse::of(
                    w.devices.len(),
                    held.iter().map(|l| l.devices.as_slice()),
                );
                workers.push(WorkerSnapshot {
                    id: id.clone(),
                    name: w.name.clone(),
                    slots: w.slots.max(busy),
                    busy,
                    devices: u32::try_from(usage.devices()).unwrap_or(u32::MAX),
                    devices_gang: u32::try_from(usage.gang_held()).unwrap_or(u32::MAX),
                    samples_per_s: held.iter().map(|l| l.progress.samples_per_s).sum(),
                    gpu_memory_bytes: gpu.into_iter().collect(),
                });
            }
            workers.sort_by(|a, b| a.id.cmp(&b.id));
            let ids: Vec<String> = inner.exps.iter().map(|e| e.id.clone()).collect();
            let unplaceable = inner
                .exps
                .iter()
                .filter(|e| e.state == ExpState::Running)
                .map(|e| views::unplaceable_tasks(&inner, e) as u64)
                .sum();
            (tasks, workers, ids, unplaceable)
        };
        let experiments = ids
            .into_iter()
            .filter_map(|id| {
                let s = self.status(&id)?;
                Some(ExperimentSnapshot {
                    scores: self.metrics.final_scores(&id),
                    id,
                    name: s.name,
                    state: s.state,
                    folds_done: u64::from(s.folds_done),
                    folds_total: u64::from(s.folds_total),
                })
            })
            .collect();
        ClusterSnapshot {
            tasks,
            workers,
            experiments,
            unplaceable,
        }
    }

    /// A worker is gone for sure (its pod failed or was deleted): every lease held by a worker
    /// registered under `worker_name` (or with that id) is expired now, so its tasks go back to the
    /// queue at once as lost, without waiting for the lease deadline. Returns how many leases ended.
    pub fn worker_lost(&self, worker_name: &str, reason: &str) -> usize {
        let now = Instant::now();
        let n = {
            let mut inner = self.inner.lock();
            let ids: Vec<String> = inner
                .workers
                .iter()
                .filter(|(id, w)| w.name == worker_name || id.as_str() == worker_name)
                .map(|(id, _)| id.clone())
                .collect();
            let leases: Vec<String> = inner
                .leases
                .iter()
                .filter(|(_, l)| ids.contains(&l.worker))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &leases {
                if let Some(mut l) = inner.leases.take(id) {
                    l.deadline = now;
                    inner.leases.adopt(id, l);
                }
            }
            // Not connected any more (until it talks again, should it still be alive).
            let gone = now.checked_sub(WORKER_SEEN_WINDOW * 2).unwrap_or(now);
            for id in &ids {
                if let Some(w) = inner.workers.get_mut(id) {
                    w.last_seen = gone;
                }
            }
            leases.len()
        };
        if n > 0 {
            tracing::warn!(
                worker = worker_name,
                "worker lost ({reason}): {n} lease(s) end now"
            );
            self.expire(now);
        }
        n
    }
}

/// The coordinator as `/metrics` and `/readyz` see it: the scheduler plus whether gRPC is serving.
pub struct CoordinatorProbe {
    /// The scheduler.
    pub sched: Arc<Scheduler>,
    /// Set once the gRPC server runs, cleared when it stops.
    pub grpc_serving: Arc<AtomicBool>,
}

impl ClusterState for CoordinatorProbe {
    fn snapshot(&self) -> Result<ClusterSnapshot, CoordError> {
        Ok(self.sched.metrics_snapshot())
    }

    fn readiness(&self) -> Readiness {
        let store_open = match self.sched.store().ping() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("readiness: state database: {e}");
                false
            }
        };
        Readiness {
            store_open,
            grpc_serving: self.grpc_serving.load(Ordering::SeqCst),
        }
    }
}
