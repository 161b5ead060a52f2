//! The Kubernetes API side of the launcher ([`KubeLauncher`]): create, scale down and delete an
//! experiment's worker Job, and watch worker pods to report lost workers at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

use super::job::{build_job, build_owner, job_name, owner_name, parallelism_for, JobRequest};
use super::{WorkerLossSink, WorkerTemplate, COMPONENT_LABEL, WORKER_COMPONENT};
use crate::metrics::Metrics;
use crate::CoordError;

/// The field manager the launcher's writes are recorded under.
pub const FIELD_MANAGER: &str = "mer-coordinator";

/// A Job the launcher created (or found from an earlier run of the coordinator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchedJob {
    /// Namespace.
    pub namespace: String,
    /// Job name.
    pub name: String,
    /// Its parallelism (pods at once).
    pub parallelism: i32,
    /// Uid of the owning ConfigMap.
    pub owner_uid: String,
    /// False when the Job already existed (coordinator restart): it is adopted, not re-created.
    pub created: bool,
}

/// A worker pod that is gone, as the pod watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLost {
    /// Pod name (= the worker's registered name, `MER_WORKER_NAME`).
    pub pod: String,
    /// Why it counts as lost.
    pub reason: String,
}

/// Whether a Job can run no more pods: scaled to 0 (its experiment had ended) or finished
/// (`Complete` or `Failed`).
pub fn job_is_spent(job: &Job) -> bool {
    let scaled_to_zero = job.spec.as_ref().and_then(|s| s.parallelism) == Some(0);
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    scaled_to_zero || finished
}

fn kube_err(what: &str, e: kube::Error) -> CoordError {
    CoordError::Runtime(format!("kubernetes: {what}: {e}"))
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Creates and manages worker Jobs through a [`kube::Client`].
#[derive(Clone)]
pub struct KubeLauncher {
    client: Client,
    template: WorkerTemplate,
}

impl KubeLauncher {
    /// A launcher on `client` (a real cluster, or a mock service in tests) with `template`.
    pub fn new(client: Client, template: WorkerTemplate) -> KubeLauncher {
        KubeLauncher { client, template }
    }

    /// A launcher with the ambient credentials: the user's kubeconfig (`mer submit --k8s`) or the
    /// pod's service account in-cluster (`kube::Client::try_default`).
    pub async fn try_default(template: WorkerTemplate) -> Result<KubeLauncher, CoordError> {
        let client = Client::try_default()
            .await
            .map_err(|e| kube_err("no kubeconfig or in-cluster config", e))?;
        Ok(KubeLauncher::new(client, template))
    }

    /// This launcher with an experiment's `[kubernetes]` table applied to its template
    /// ([`WorkerTemplate::apply_spec`]).
    pub fn with_spec(&self, k: &crate::spec::KubernetesSpec) -> KubeLauncher {
        let mut template = self.template.clone();
        template.apply_spec(k);
        KubeLauncher {
            client: self.client.clone(),
            template,
        }
    }

    /// The worker template in use.
    pub fn template(&self) -> &WorkerTemplate {
        &self.template
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.template.namespace)
    }
    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.template.namespace)
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.template.namespace)
    }

    /// Creates the experiment's owner ConfigMap and its worker Job. Idempotent: objects that exist
    /// already (a restarted coordinator) are adopted.
    pub async fn launch(&self, req: &JobRequest) -> Result<LaunchedJob, CoordError> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let owner = build_owner(&self.template, req);
        let owner = match self.config_maps().create(&pp, &owner).await {
            Ok(cm) => cm,
            Err(e) if api_code(&e) == Some(409) => self
                .config_maps()
                .get(&owner_name(&req.experiment_id))
                .await
                .map_err(|e| kube_err("get owner ConfigMap", e))?,
            Err(e) => return Err(kube_err("create owner ConfigMap", e)),
        };
        let uid = owner.metadata.uid.clone().unwrap_or_default();
        let job = build_job(&self.template, req, &uid)?;
        let (job, created) = match self.jobs().create(&pp, &job).await {
            Ok(j) => (j, true),
            Err(e) if api_code(&e) == Some(409) => {
                let existing = self
                    .jobs()
                    .get(&job_name(&req.experiment_id))
                    .await
                    .map_err(|e| kube_err("get worker Job", e))?;
                if req.runnable_tasks > 0 && job_is_spent(&existing) {
                    // The experiment has tasks again (a failed one re-submitted) but its Job was
                    // scaled to 0 or has finished: a finished Job cannot run pods again, so it is
                    // replaced. Until the old one is gone the name is taken; the next pass retries.
                    (self.replace_job(&pp, &job).await?, true)
                } else {
                    (existing, false)
                }
            }
            Err(e) => return Err(kube_err("create worker Job", e)),
        };
        let parallelism = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(0);
        let name = job
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| job_name(&req.experiment_id));
        tracing::info!(
            "kubernetes: {} Job {}/{} with {parallelism} worker pods for experiment {}",
            if created { "created" } else { "adopted" },
            self.template.namespace,
            name,
            req.experiment_id
        );
        Ok(LaunchedJob {
            namespace: self.template.namespace.clone(),
            name,
            parallelism,
            owner_uid: uid,
            created,
        })
    }

    /// Deletes the spent Job of the same name and creates `job` in its place.
    async fn replace_job(&self, pp: &PostParams, job: &Job) -> Result<Job, CoordError> {
        let name = job.metadata.name.clone().unwrap_or_default();
        match self.jobs().delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(kube_err("delete the spent worker Job", e)),
        }
        tracing::info!(
            "kubernetes: replacing the spent worker Job {}/{name}",
            self.template.namespace
        );
        match self.jobs().create(pp, job).await {
            Ok(j) => Ok(j),
            Err(e) if api_code(&e) == Some(409) => Err(CoordError::Runtime(format!(
                "kubernetes: the spent worker Job {}/{name} is still being deleted; the new one is created on a later pass",
                self.template.namespace
            ))),
            Err(e) => Err(kube_err("create worker Job", e)),
        }
    }

    /// Shrinks the Job when fewer pods are needed: `unfinished` is the number of tasks not done yet
    /// (ready, blocked or running); 0 scales to no pod at all. Never grows a Job. Returns the new
    /// parallelism when a patch was sent, `None` when nothing changed or the Job is gone.
    pub async fn scale_down(
        &self,
        experiment_id: &str,
        unfinished: u32,
    ) -> Result<Option<i32>, CoordError> {
        let name = job_name(experiment_id);
        let job = match self.jobs().get(&name).await {
            Ok(j) => j,
            Err(e) if api_code(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(kube_err("get worker Job", e)),
        };
        let current = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        let want = if unfinished == 0 {
            0
        } else {
            parallelism_for(&self.template, unfinished)
        };
        if want >= current {
            return Ok(None);
        }
        let patch = serde_json::json!({ "spec": { "parallelism": want } });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.jobs().patch(&name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!("kubernetes: Job {name} scaled down from {current} to {want} pods ({unfinished} tasks left)");
                Ok(Some(want))
            }
            Err(e) if api_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(kube_err("patch worker Job parallelism", e)),
        }
    }

    /// Deletes the experiment's Job (pods go with it, background propagation) and its owner ConfigMap.
    /// Returns whether anything was deleted; objects already gone are fine.
    pub async fn cancel(&self, experiment_id: &str) -> Result<bool, CoordError> {
        let dp = DeleteParams::background();
        let mut deleted = false;
        match self.jobs().delete(&job_name(experiment_id), &dp).await {
            Ok(_) => deleted = true,
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(kube_err("delete worker Job", e)),
        }
        match self
            .config_maps()
            .delete(&owner_name(experiment_id), &dp)
            .await
        {
            Ok(_) => deleted = true,
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(kube_err("delete owner ConfigMap", e)),
        }
        tracing::info!("kubernetes: experiment {experiment_id} cancelled (deleted: {deleted})");
        Ok(deleted)
    }

    /// Watches the namespace's worker pods until `shutdown`, and reports each pod that failed, was
    /// disrupted or deleted before it succeeded to `sink` (once per pod), counting it in `metrics`.
    /// The watch resumes from the last resource version when the server closes it, and restarts from
    /// a fresh list after errors (1 s pause).
    pub fn watch_pods(
        &self,
        sink: Arc<dyn WorkerLossSink>,
        metrics: Option<Arc<Metrics>>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pods = self.pods();
        tokio::spawn(async move {
            let wp = WatchParams::default()
                .labels(&format!("{COMPONENT_LABEL}={WORKER_COMPONENT}"))
                .timeout(290);
            let mut version = "0".to_string();
            let mut reported: HashSet<String> = HashSet::new();
            while !shutdown.is_cancelled() {
                let stream = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    s = pods.watch(&wp, &version) => s,
                };
                let mut stream = match stream {
                    Ok(s) => s.boxed(),
                    Err(e) => {
                        tracing::warn!("kubernetes: pod watch failed: {e}; retrying in 1 s");
                        version = "0".into();
                        tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                        continue;
                    }
                };
                loop {
                    let ev = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        ev = stream.next() => ev,
                    };
                    let Some(ev) = ev else { break };
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            tracing::warn!("kubernetes: pod watch stream: {e}");
                            version = "0".into();
                            break;
                        }
                    };
                    let (pod, deleted) = match ev {
                        WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
                        WatchEvent::Deleted(p) => (p, true),
                        WatchEvent::Bookmark(b) => {
                            version = b.metadata.resource_version;
                            continue;
                        }
                        WatchEvent::Error(s) => {
                            tracing::warn!("kubernetes: pod watch error {}: {}", s.code, s.message);
                            version = "0".into();
                            break;
                        }
                    };
                    if let Some(v) = &pod.metadata.resource_version {
                        version = v.clone();
                    }
                    let Some(name) = pod.metadata.name.clone() else {
                        continue;
                    };
                    if let Some(reason) = lost_reason(&pod, deleted) {
                        if reported.insert(name.clone()) {
                            let requeued = sink.worker_lost(&name, &reason);
                            if let Some(m) = &metrics {
                                m.on_worker_lost("kubernetes");
                            }
                            tracing::warn!("kubernetes: worker pod {name} lost ({reason}); {requeued} task(s) re-queued");
                        }
                    }
                    if deleted {
                        reported.remove(&name);
                    }
                }
            }
        })
    }
}

/// Why a worker pod counts as lost, `None` while it is healthy or once it succeeded. `deleted` is true
/// for a watch `DELETED` event.
pub fn lost_reason(pod: &Pod, deleted: bool) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Succeeded" {
        return None;
    }
    if phase == "Failed" {
        let exit = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == "worker"))
            .and_then(|c| c.state.as_ref())
            .and_then(|st| st.terminated.as_ref())
            .map(|t| {
                format!(
                    "exit code {}{}",
                    t.exit_code,
                    t.reason
                        .as_deref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                )
            });
        let why = exit
            .or_else(|| status.and_then(|s| s.reason.clone()))
            .unwrap_or_else(|| "failed".into());
        return Some(format!("pod failed: {why}"));
    }
    let disrupted = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            .map(|c| c.reason.clone().unwrap_or_default())
    });
    if let Some(r) = disrupted {
        return Some(format!("pod disrupted: {r}"));
    }
    if deleted || pod.metadata.deletion_timestamp.is_some() {
        return Some(format!("pod deleted while {phase}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn lost_reasons() {
        let running =
            pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}));
        assert_eq!(lost_reason(&running, false), None);
        assert_eq!(
            lost_reason(&running, true).as_deref(),
            Some("pod deleted while Running")
        );
        let ok =
            pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        assert_eq!(lost_reason(&ok, true), None);
        let failed = pod(
            serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Failed", "containerStatuses": [
            {"name": "worker", "image": "w", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}),
        );
        assert_eq!(
            lost_reason(&failed, false).as_deref(),
            Some("pod failed: exit code 137, OOMKilled")
        );
        let evicted = pod(
            serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]}}),
        );
        assert_eq!(
            lost_reason(&evicted, false).as_deref(),
            Some("pod disrupted: PreemptionByScheduler")
        );
    }
}
