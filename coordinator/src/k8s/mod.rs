//! The Kubernetes launcher: for an experiment with `launcher = "kubernetes"` it runs the workers as
//! one batch/v1 **Indexed Job** of worker pods that pull tasks from the coordinator (the work-queue
//! pattern: one Job serves a whole sweep).
//!
//! - [`job`]: the pure part, the manifests ([`build_job`], [`build_owner`]) made from a
//!   [`WorkerTemplate`] (written by the Helm chart into a ConfigMap) and a [`JobRequest`].
//! - [`controller`]: the coordinator's loop that keeps each running experiment's Job in step with
//!   the scheduler ([`JobController`]).
//! - [`launcher`]: the API calls ([`KubeLauncher`]): create the owner ConfigMap and the Job, scale the
//!   Job down when no task is left, delete it on cancel, and watch the worker pods so that a failed
//!   pod's tasks are re-queued at once (through [`WorkerLossSink`]) instead of at lease expiry.
//!
//! **Ownership.** Each experiment gets a ConfigMap `mer-exp-<id>` that owns its Job (ownerReference,
//! `controller: true`, `blockOwnerDeletion: true`); the Job owns its pods. Deleting the ConfigMap
//! (`kubectl delete configmap -l mer.dev/experiment=<id>`, or `mer cancel`) lets the garbage collector
//! remove the Job and every pod. The ConfigMap was chosen over the coordinator's Deployment as owner so
//! that one experiment can be cleaned up alone and a coordinator restart or upgrade does not kill
//! running workers.
//!
//! **Failures.** `backoffLimitPerIndex` bounds the restarts of each worker index; the pod failure policy
//! ignores disruptions (preemption, eviction, node drain: the pod is replaced without counting) and
//! fails the whole Job on [`EXIT_FATAL`] (the coordinator refused the worker: bad token or protocol,
//! which every pod would hit). Any other pod failure costs that index one restart and, through the pod
//! watch, one attempt of the tasks the pod held: never the Job.

pub mod controller;
pub mod job;
pub mod launcher;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use serde::{Deserialize, Serialize};

use crate::spec::{is_dns_label, KubernetesSpec};
use crate::CoordError;

pub use controller::{Action, JobController};
pub use job::{build_job, build_owner, job_name, owner_name, JobRequest};
pub use launcher::{KubeLauncher, LaunchedJob, PodLost};

/// Exit code of `mer worker` when the coordinator refuses it for good (token, protocol version):
/// the pod failure policy turns it into a failed Job instead of endless restarts.
pub const EXIT_FATAL: i32 = 3;

/// The label every object of an experiment carries (value: the sanitised experiment id).
pub const EXPERIMENT_LABEL: &str = "mer.dev/experiment";
/// The label of worker pods (value `mer-worker`), used by the pod watch.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The value of [`COMPONENT_LABEL`] on worker pods.
pub const WORKER_COMPONENT: &str = "mer-worker";
/// The extended resource name of NVIDIA GPUs (device plugin).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Exactly the API access the launcher uses: (API group, resource, verbs). The chart's Role grants
/// this and nothing else (tests/helm_chart.rs checks they agree).
pub const LAUNCHER_RBAC: &[(&str, &str, &[&str])] = &[
    (
        "batch",
        "jobs",
        &["create", "get", "list", "watch", "patch", "delete"],
    ),
    ("", "pods", &["get", "list", "watch"]),
    ("", "configmaps", &["create", "get", "delete"]),
];

/// A `name`/`key` reference into a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// A plain environment variable for worker pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPair {
    /// Variable name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// An image pull secret name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSecret {
    /// Secret name.
    pub name: String,
}

/// The worker pod template: what the chart's `worker:` values become (ConfigMap
/// `<release>-worker-template`, key `worker-template.json`, mounted into the coordinator and passed as
/// `--k8s-worker-template`). JSON keys are camelCase as in the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerTemplate {
    /// Namespace of the Jobs (the coordinator's own namespace in-cluster).
    pub namespace: String,
    /// gRPC URL of the coordinator as pods reach it (`http://mer.ns.svc:50051`).
    pub coordinator_address: String,
    /// The Secret key holding the coordinator token (injected as `MER_TOKEN` via secretKeyRef).
    pub token_secret: SecretKey,
    /// Worker image (CUDA + torch 2.11.0 + full `mer`).
    pub image: String,
    /// Image pull policy.
    #[serde(default = "if_not_present")]
    pub image_pull_policy: String,
    /// Image pull secrets.
    #[serde(default)]
    pub image_pull_secrets: Vec<PullSecret>,
    /// GPUs per pod (`nvidia.com/gpu` requests = limits); 0 = CPU pods.
    #[serde(default)]
    pub gpus: u32,
    /// Training slots per GPU (per pod for CPU pods).
    #[serde(default = "one")]
    pub slots_per_gpu: u32,
    /// Upper bound of the Job's parallelism.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    /// Restarts allowed per Job index.
    #[serde(default = "default_backoff")]
    pub backoff_limit_per_index: u32,
    /// Seconds a finished Job is kept before Kubernetes deletes it.
    #[serde(default)]
    pub ttl_seconds_after_finished: Option<u32>,
    /// Node selector of worker pods.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of worker pods.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// CPU/memory requests and limits (the GPU resource is added from `gpus`).
    #[serde(default)]
    pub resources: ResourceRequirements,
    /// Extra environment variables.
    #[serde(default)]
    pub env: Vec<EnvPair>,
    /// Size of the memory-backed /dev/shm (data loader buffers).
    #[serde(default = "default_shm")]
    pub shm_size: String,
    /// Labels copied onto the Job and its pods (release identification).
    #[serde(default)]
    pub release_labels: BTreeMap<String, String>,
}

fn if_not_present() -> String {
    "IfNotPresent".into()
}
fn one() -> u32 {
    1
}
fn default_max_parallelism() -> u32 {
    68
}
fn default_backoff() -> u32 {
    3
}
fn default_shm() -> String {
    "2Gi".into()
}

impl WorkerTemplate {
    /// Reads the chart's `worker-template.json`; errors name the file and the JSON line/column.
    pub fn from_file(path: &Path) -> Result<WorkerTemplate, CoordError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoordError::io(path, e))?;
        let t: WorkerTemplate = serde_json::from_str(&text)
            .map_err(|e| CoordError::json(path.display().to_string(), e))?;
        t.check()
            .map_err(|why| CoordError::invalid(path.display().to_string(), why))?;
        Ok(t)
    }

    /// A template for `mer submit --k8s` from a workstation (no chart ConfigMap): the experiment's
    /// `[kubernetes]` table plus the coordinator URL and token Secret given on the command line.
    pub fn from_spec(
        k: &KubernetesSpec,
        coordinator_address: &str,
        token_secret: SecretKey,
    ) -> WorkerTemplate {
        let mut t = WorkerTemplate {
            namespace: k.namespace.clone(),
            coordinator_address: coordinator_address.to_string(),
            token_secret,
            image: k.image.clone(),
            image_pull_policy: if_not_present(),
            image_pull_secrets: Vec::new(),
            gpus: 0,
            slots_per_gpu: 1,
            max_parallelism: k.workers.max(1),
            backoff_limit_per_index: default_backoff(),
            ttl_seconds_after_finished: Some(86_400),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            resources: ResourceRequirements::default(),
            env: Vec::new(),
            shm_size: default_shm(),
            release_labels: BTreeMap::new(),
        };
        t.apply_spec(k);
        t
    }

    /// Applies an experiment's `[kubernetes]` table: image, GPUs per worker, slots per device and the
    /// worker count (an upper bound: it never raises the chart's `maxParallelism`). The namespace
    /// stays the template's (the coordinator's Role only covers its own namespace).
    pub fn apply_spec(&mut self, k: &KubernetesSpec) {
        self.image = k.image.clone();
        self.gpus = k.gpus_per_worker;
        self.slots_per_gpu = k.slots_per_device.max(1);
        self.max_parallelism = self.max_parallelism.min(k.workers.max(1));
    }

    /// Training slots of one worker pod.
    pub fn slots_per_pod(&self) -> u32 {
        self.gpus.max(1) * self.slots_per_gpu.max(1)
    }

    /// Checks what the API server would refuse later with a less helpful message.
    pub fn check(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("image is empty".into());
        }
        if !is_dns_label(&self.namespace) {
            return Err(format!("namespace '{}' is not a DNS label", self.namespace));
        }
        if !(self.coordinator_address.starts_with("http://")
            || self.coordinator_address.starts_with("https://"))
        {
            return Err(format!(
                "coordinatorAddress '{}' must be an http:// or https:// URL",
                self.coordinator_address
            ));
        }
        if self.max_parallelism == 0 {
            return Err("maxParallelism must be at least 1".into());
        }
        if self.token_secret.name.is_empty() || self.token_secret.key.is_empty() {
            return Err("tokenSecret needs a name and a key".into());
        }
        Ok(())
    }
}

/// `mer submit --k8s`: creates the worker Job of a submitted experiment from a workstation, with the
/// user's kubeconfig (`kube::Client::try_default`). `pod_coordinator` is the coordinator URL as pods
/// reach it, `token_secret` the Secret key holding the token in the Job's namespace. Idempotent (an
/// existing Job, e.g. one made by an in-cluster coordinator, is adopted).
pub async fn submit_job(
    spec: &crate::spec::ExperimentSpec,
    experiment_id: &str,
    unfinished_tasks: u32,
    pod_coordinator: &str,
    token_secret: SecretKey,
) -> Result<LaunchedJob, CoordError> {
    let k = spec.kubernetes.as_ref().ok_or_else(|| {
        CoordError::invalid(
            format!("experiment {}", spec.name),
            "--k8s needs launcher = \"kubernetes\" and a [kubernetes] table (image, workers, gpus_per_worker) in the spec",
        )
    })?;
    let t = WorkerTemplate::from_spec(k, pod_coordinator, token_secret);
    t.check()
        .map_err(|why| CoordError::invalid("kubernetes settings", why))?;
    let launcher = KubeLauncher::try_default(t).await?;
    launcher
        .launch(&JobRequest::new(
            experiment_id,
            &spec.name,
            unfinished_tasks,
        ))
        .await
}

/// Parses `name:key` (or `name`, key `token`) into a [`SecretKey`].
pub fn parse_secret_key(s: &str) -> Result<SecretKey, CoordError> {
    let (name, key) = s.split_once(':').unwrap_or((s, "token"));
    if !is_dns_label(name) || key.is_empty() {
        return Err(CoordError::invalid(
            "token secret",
            format!("'{s}' is not NAME[:KEY] with a DNS-label NAME"),
        ));
    }
    Ok(SecretKey {
        name: name.into(),
        key: key.into(),
    })
}

/// Where the launcher reports a lost worker so that its tasks are re-queued at once. The scheduler
/// implements it; `worker_name` is the name the worker registered with (its pod name, from the
/// `MER_WORKER_NAME` env var). Returns how many leased tasks went back to the queue.
pub trait WorkerLossSink: Send + Sync + 'static {
    /// The pod `worker_name` failed or was deleted (`reason` says how).
    fn worker_lost(&self, worker_name: &str, reason: &str) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_reads_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(
            &p,
            r#"{"namespace":"ml","coordinatorAddress":"http://mer.ml.svc:50051","tokenSecret":{"name":"mer-token","key":"token"},
                "image":"w:1","gpus":2,"slotsPerGpu":2,"tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}],
                "resources":{"requests":{"cpu":"4"}}}"#,
        )
        .unwrap();
        let t = WorkerTemplate::from_file(&p).unwrap();
        assert_eq!(
            (
                t.gpus,
                t.slots_per_pod(),
                t.max_parallelism,
                t.backoff_limit_per_index
            ),
            (2, 4, 68, 3)
        );
        std::fs::write(&p, r#"{"namespace":"ml","coordinatorAddress":"mer:50051","tokenSecret":{"name":"a","key":"b"},"image":"w"}"#).unwrap();
        let e = WorkerTemplate::from_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("t.json") && e.contains("coordinatorAddress"),
            "{e}"
        );
        std::fs::write(&p, r#"{"namespace":"ml","bogus":1}"#).unwrap();
        let e = WorkerTemplate::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("t.json") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn secret_keys_parse() {
        assert_eq!(
            parse_secret_key("mer-token").unwrap(),
            SecretKey {
                name: "mer-token".into(),
                key: "token".into()
            }
        );
        assert_eq!(
            parse_secret_key("s:k").unwrap(),
            SecretKey {
                name: "s".into(),
                key: "k".into()
            }
        );
        assert!(parse_secret_key("Bad:k").is_err());
    }

    #[test]
    fn spec_overrides_image_gpus_and_caps_workers() {
        let k = KubernetesSpec {
            image: "mer:2".into(),
            namespace: "default".into(),
            workers: 200,
            gpus_per_worker: 4,
            slots_per_device: 2,
        };
        let mut t = WorkerTemplate::from_spec(
            &k,
            "http://c:50051",
            SecretKey {
                name: "s".into(),
                key: "k".into(),
            },
        );
        assert_eq!((t.max_parallelism, t.gpus, t.slots_per_pod()), (200, 4, 8));
        t.max_parallelism = 68;
        t.apply_spec(&k);
        assert_eq!(t.max_parallelism, 68, "a spec never raises the chart's cap");
        t.apply_spec(&KubernetesSpec { workers: 10, ..k });
        assert_eq!(t.max_parallelism, 10);
    }
}
