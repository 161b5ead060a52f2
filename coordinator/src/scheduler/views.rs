//! Read-only views of the hot state: plans, status (the wire form), task views for the dashboard.

use super::graph::bump;
use super::{placement, Experiment, Inner, Scheduler, TaskView};
use crate::plan::Plan;
use crate::scheduler::lease::ActiveLease;
use crate::store::ExpState;
use crate::task_state::TaskState;
use mer_shared::proto;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

impl Scheduler {
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

    /// Replaces what the launcher says about experiment `id` (shown by `mer status` and the dashboard);
    /// watchers wake up when it changed.
    pub fn set_launcher_notes(&self, id: &str, notes: Vec<String>) {
        let mut inner = self.inner.lock();
        if let Some(&i) = inner.exp_by_id.get(id) {
            let e = &mut inner.exps[i];
            if e.launcher != notes {
                e.launcher = notes;
                bump(e);
            }
        }
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
        s.waiting = waiting_reasons(&inner, e);
        s.launcher = e.launcher.clone();
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
                    devices: lease_device_names(&inner, l),
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
                    inner: def.is_inner(),
                    state: task.state,
                    attempts: task.attempts,
                    failures: task.failures,
                    lost: task.lost,
                    worker: lease.map(|l| l.worker.clone()),
                    progress: lease.map(|l| l.progress.clone()),
                    devices: lease
                        .map(|l| lease_device_names(&inner, l))
                        .unwrap_or_default(),
                    errors: task.errors.clone(),
                })
            })
            .collect();
        Some(views)
    }
}

/// The names of the devices a lease holds (`cuda:0`...; `#i` for an index the worker's list lacks).
pub(super) fn lease_device_names(
    inner: &Inner,
    l: &crate::scheduler::lease::ActiveLease,
) -> Vec<String> {
    let names = inner.workers.get(&l.worker).map(|w| w.devices.as_slice());
    l.devices
        .iter()
        .map(|&d| {
            names
                .and_then(|n| n.get(d as usize))
                .cloned()
                .unwrap_or_else(|| format!("#{d}"))
        })
        .collect()
}

/// Why an experiment's ready tasks are not leased, when no registered worker could ever hold them
/// ([`placement::unplaceable`]); empty while no worker is registered (they are simply waiting for one).
pub(super) fn waiting_reasons(inner: &Inner, e: &Experiment) -> Vec<String> {
    let Some(largest) = largest_worker(inner) else {
        return Vec::new();
    };
    ready_by_need(inner, e)
        .into_iter()
        .filter_map(|(need, count)| placement::unplaceable(count, need, largest))
        .collect()
}

/// Ready tasks of an experiment that no registered worker has the devices for (a metric).
pub(super) fn unplaceable_tasks(inner: &Inner, e: &Experiment) -> usize {
    let Some(largest) = largest_worker(inner) else {
        return 0;
    };
    ready_by_need(inner, e)
        .into_iter()
        .filter(|&(need, _)| placement::exceeds_every_worker(need, largest))
        .map(|(_, count)| count)
        .sum()
}

/// The most devices of any registered worker (a worker whose list is unknown counts as one); `None`
/// without workers.
fn largest_worker(inner: &Inner) -> Option<usize> {
    inner.workers.values().map(|w| w.devices.len().max(1)).max()
}

/// An experiment's ready tasks counted by the devices each needs.
fn ready_by_need(inner: &Inner, e: &Experiment) -> std::collections::BTreeMap<usize, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut by_need = std::collections::BTreeMap::new();
    for &t in e.ready_prior.iter().chain(&e.ready_target) {
        let task = &inner.tasks[t];
        if task.state == TaskState::Ready && seen.insert(t) {
            *by_need
                .entry(task.def.payload.train.devices_per_task.max(1))
                .or_default() += 1;
        }
    }
    by_need
}
