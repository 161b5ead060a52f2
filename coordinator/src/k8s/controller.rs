//! The in-cluster side of the launcher: a loop in the coordinator that keeps one worker Job per
//! running experiment with `launcher = "kubernetes"`, shrinks it as tasks run out, deletes it when the
//! experiment is cancelled, and runs the pod watch that re-queues a failed pod's tasks at once.
//! Started by the coordinator when it is given a worker template (`--k8s-worker-template`, which the
//! Helm chart sets).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{JobRequest, KubeLauncher, WorkerLossSink};
use crate::scheduler::{ExpState, Scheduler};
use crate::spec::{parse_spec, KubernetesSpec, LauncherKind};
use crate::CoordError;

/// The scheduler is where the pod watch reports lost workers: their leases end at once.
impl WorkerLossSink for Scheduler {
    fn worker_lost(&self, worker_name: &str, reason: &str) -> usize {
        Scheduler::worker_lost(self, worker_name, reason)
    }
}

/// How often the controller reconciles Jobs with the scheduler's state.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// What the controller did to one experiment in a reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Created (or adopted) the Job with this parallelism.
    Launched(i32),
    /// Patched the Job's parallelism down to this.
    Scaled(i32),
    /// Deleted the Job and its owner (cancelled experiment).
    Deleted,
}

/// Reconciles worker Jobs with the scheduler.
pub struct JobController {
    launcher: KubeLauncher,
    sched: Arc<Scheduler>,
    /// Experiments (by id) known to use the Kubernetes launcher, with their name and `[kubernetes]`
    /// table; `None` = not ours.
    kinds: HashMap<String, Option<(String, KubernetesSpec)>>,
    launched: HashSet<String>,
    closed: HashSet<String>,
}

impl JobController {
    /// A controller creating Jobs through `launcher` for the experiments of `sched`.
    pub fn new(launcher: KubeLauncher, sched: Arc<Scheduler>) -> JobController {
        JobController {
            launcher,
            sched,
            kinds: HashMap::new(),
            launched: HashSet::new(),
            closed: HashSet::new(),
        }
    }

    async fn uses_kubernetes(
        &mut self,
        id: &str,
    ) -> Result<Option<(String, KubernetesSpec)>, CoordError> {
        if let Some(k) = self.kinds.get(id) {
            return Ok(k.clone());
        }
        let toml = self.sched.store().experiment_spec(id).await?;
        let kind = match toml {
            Some(t) => {
                let spec = parse_spec(&format!("<experiment {id}>"), &t)?;
                match (spec.launcher, spec.kubernetes) {
                    (LauncherKind::Kubernetes, Some(k)) => Some((spec.name, k)),
                    _ => None,
                }
            }
            None => None,
        };
        self.kinds.insert(id.to_string(), kind.clone());
        Ok(kind)
    }

    /// One pass: for every experiment using the Kubernetes launcher, create its Job while it runs,
    /// shrink it to the tasks left (0 when it ended), delete it when it was cancelled, and replace a
    /// spent Job when a failed experiment runs again after a re-submission. Errors of one
    /// experiment are logged and retried next pass; the actions taken are returned.
    pub async fn reconcile_once(&mut self) -> Vec<(String, Action)> {
        let mut actions = Vec::new();
        for id in self.sched.experiment_ids() {
            if self.closed.contains(&id) {
                // A failed experiment that was re-submitted runs again: it needs a Job again.
                if self.sched.experiment_state(&id) == Some(ExpState::Running) {
                    self.closed.remove(&id);
                    self.launched.remove(&id);
                } else {
                    continue;
                }
            }
            let (name, launcher) = match self.uses_kubernetes(&id).await {
                Ok(Some((n, k))) => (n, self.launcher.with_spec(&k)),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(experiment = %id, "kubernetes launcher: cannot read the spec: {e}");
                    continue;
                }
            };
            let Some(st) = self.sched.status(&id) else {
                continue;
            };
            let unfinished = st
                .tasks_total
                .saturating_sub(st.tasks_done + st.tasks_failed);
            let Some(state) = self.sched.experiment_state(&id) else {
                continue;
            };
            let r = match state {
                ExpState::Running if !self.launched.contains(&id) => launcher
                    .launch(&JobRequest::new(&id, &name, unfinished))
                    .await
                    .map(|j| {
                        self.launched.insert(id.clone());
                        Some(Action::Launched(j.parallelism))
                    }),
                ExpState::Running => launcher
                    .scale_down(&id, unfinished)
                    .await
                    .map(|p| p.map(Action::Scaled)),
                ExpState::Cancelled => launcher.cancel(&id).await.map(|_| {
                    self.closed.insert(id.clone());
                    Some(Action::Deleted)
                }),
                _ => launcher.scale_down(&id, 0).await.map(|p| {
                    self.closed.insert(id.clone());
                    p.map(Action::Scaled)
                }),
            };
            match r {
                Ok(Some(a)) => actions.push((id, a)),
                Ok(None) => {}
                Err(e) => tracing::warn!(experiment = %id, "kubernetes launcher: {e}"),
            }
        }
        actions
    }

    /// Runs the pod watch and a reconcile pass every `every` until `shutdown`.
    pub fn spawn(
        mut self,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let sink: Arc<dyn WorkerLossSink> = self.sched.clone();
        let watch =
            self.launcher
                .watch_pods(sink, Some(self.sched.metrics().clone()), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => { self.reconcile_once().await; }
                }
            }
            let _ = watch.await;
        })
    }
}
