//! The manifests of the Kubernetes launcher, as pure functions of a [`WorkerTemplate`] and a
//! [`JobRequest`] (unit-tested here; validated against the Kubernetes schemas in tests/helm_chart.rs).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, LocalObjectReference,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    WorkerTemplate, COMPONENT_LABEL, EXIT_FATAL, EXPERIMENT_LABEL, GPU_RESOURCE, WORKER_COMPONENT,
};
use crate::CoordError;

/// What the scheduler asks the launcher for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// Experiment id (any string; sanitised for object names and labels).
    pub experiment_id: String,
    /// Experiment name (an annotation, for people).
    pub experiment_name: String,
    /// Tasks that are not finished yet (ready, blocked on a dependency, or running).
    pub runnable_tasks: u32,
}

impl JobRequest {
    /// A request for `runnable_tasks` tasks of experiment `experiment_id` named `experiment_name`.
    pub fn new(experiment_id: &str, experiment_name: &str, runnable_tasks: u32) -> JobRequest {
        JobRequest {
            experiment_id: experiment_id.into(),
            experiment_name: experiment_name.into(),
            runnable_tasks,
        }
    }
}

/// `id` as a DNS-1123 label fragment: lower-case letters, digits and '-', at most 40 characters,
/// no leading/trailing '-'. Two ids that differ only in case or punctuation get a hash suffix.
pub fn sanitize(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let changed = s != id || s.len() > 40;
    if changed {
        let h = mer_shared::digest::sha256_hex(id.as_bytes());
        s.truncate(31);
        s = format!("{}-{}", s.trim_matches('-'), &h[..8]);
    }
    s.trim_matches('-').to_string()
}

/// Name of the worker Job of an experiment.
pub fn job_name(experiment_id: &str) -> String {
    format!("mer-workers-{}", sanitize(experiment_id))
}

/// Name of the per-experiment ConfigMap that owns the Job.
pub fn owner_name(experiment_id: &str) -> String {
    format!("mer-exp-{}", sanitize(experiment_id))
}

/// Pods needed for `runnable` tasks, capped by the template's `maxParallelism` (at least 1).
pub fn parallelism_for(t: &WorkerTemplate, runnable: u32) -> i32 {
    let pods = runnable
        .div_ceil(t.slots_per_pod())
        .clamp(1, t.max_parallelism.max(1));
    i32::try_from(pods).unwrap_or(i32::MAX)
}

fn labels(t: &WorkerTemplate, req: &JobRequest) -> BTreeMap<String, String> {
    let mut l = t.release_labels.clone();
    l.insert("app.kubernetes.io/name".into(), "mer".into());
    l.insert(COMPONENT_LABEL.into(), WORKER_COMPONENT.into());
    l.insert(EXPERIMENT_LABEL.into(), sanitize(&req.experiment_id));
    l
}

fn annotations(req: &JobRequest) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "mer.dev/experiment-id".to_string(),
            req.experiment_id.clone(),
        ),
        (
            "mer.dev/experiment-name".to_string(),
            req.experiment_name.clone(),
        ),
    ])
}

/// The per-experiment ConfigMap that owns the Job (deleting it removes the Job and its pods).
pub fn build_owner(t: &WorkerTemplate, req: &JobRequest) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(owner_name(&req.experiment_id)),
            namespace: Some(t.namespace.clone()),
            labels: Some(
                labels(t, req)
                    .into_iter()
                    .filter(|(k, _)| k != COMPONENT_LABEL)
                    .collect(),
            ),
            annotations: Some(annotations(req)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("experiment-id".to_string(), req.experiment_id.clone()),
            ("experiment-name".to_string(), req.experiment_name.clone()),
            ("job".to_string(), job_name(&req.experiment_id)),
        ])),
        ..Default::default()
    }
}

/// Where worker pods keep their artifact cache (an emptyDir).
pub const CACHE_DIR: &str = "/var/cache/mer";

/// The `mer worker` command line of a pod: slots, one `--device` per GPU (`cuda:0`...) or `cpu`, the
/// pod name as worker name (Kubernetes expands `$(MER_WORKER_NAME)`), and the cache folder. The
/// coordinator URL and the token come from `MER_COORDINATOR` / `MER_TOKEN`.
pub fn worker_args(t: &WorkerTemplate) -> Vec<String> {
    let mut a = vec![
        "worker".to_string(),
        "--slots".into(),
        t.slots_per_pod().to_string(),
    ];
    if t.gpus == 0 {
        a.extend(["--device".to_string(), "cpu".to_string()]);
    } else {
        for i in 0..t.gpus {
            a.extend(["--device".to_string(), format!("cuda:{i}")]);
        }
    }
    a.extend([
        "--name".to_string(),
        "$(MER_WORKER_NAME)".to_string(),
        "--cache-dir".to_string(),
        CACHE_DIR.to_string(),
    ]);
    a
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The Indexed worker Job of an experiment, owned by its ConfigMap `owner_uid`.
///
/// Every pod runs `mer worker` ([`worker_args`]) with `MER_COORDINATOR`, `MER_TOKEN` (secretKeyRef),
/// `MER_WORKER_NAME` (the pod name: the worker registers under it, so the pod watch can name it to the
/// scheduler) and, for information, `MER_SLOTS`, `MER_DEVICE` and `MER_EXPERIMENT`.
pub fn build_job(t: &WorkerTemplate, req: &JobRequest, owner_uid: &str) -> Result<Job, CoordError> {
    t.check()
        .map_err(|why| CoordError::invalid("kubernetes worker template", why))?;
    if owner_uid.is_empty() {
        return Err(CoordError::invalid(
            "kubernetes owner",
            "the owner ConfigMap has no uid",
        ));
    }
    let n = parallelism_for(t, req.runnable_tasks);
    let labels = labels(t, req);

    let mut resources = t.resources.clone();
    if t.gpus > 0 {
        let q = Quantity(t.gpus.to_string());
        resources
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_RESOURCE.into(), q.clone());
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_RESOURCE.into(), q);
    }

    let mut envs = vec![
        env("MER_COORDINATOR", t.coordinator_address.clone()),
        EnvVar {
            name: "MER_TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: t.token_secret.name.clone(),
                    key: t.token_secret.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        },
        env("MER_SLOTS", t.slots_per_pod().to_string()),
        env("MER_DEVICE", if t.gpus > 0 { "cuda" } else { "cpu" }),
        EnvVar {
            name: "MER_WORKER_NAME".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        },
        env("MER_EXPERIMENT", req.experiment_id.clone()),
    ];
    envs.extend(t.env.iter().map(|e| env(&e.name, e.value.clone())));

    let container = Container {
        name: "worker".into(),
        image: Some(t.image.clone()),
        image_pull_policy: Some(t.image_pull_policy.clone()),
        command: Some(vec!["mer".into()]),
        args: Some(worker_args(t)),
        env: Some(envs),
        resources: Some(resources),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "dshm".into(),
                mount_path: "/dev/shm".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "cache".into(),
                mount_path: CACHE_DIR.into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };

    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        containers: vec![container],
        node_selector: (!t.node_selector.is_empty()).then(|| t.node_selector.clone()),
        tolerations: (!t.tolerations.is_empty()).then(|| t.tolerations.clone()),
        image_pull_secrets: (!t.image_pull_secrets.is_empty()).then(|| {
            t.image_pull_secrets
                .iter()
                .map(|s| LocalObjectReference {
                    name: s.name.clone(),
                })
                .collect()
        }),
        volumes: Some(vec![
            Volume {
                name: "dshm".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity(t.shm_size.clone())),
                }),
                ..Default::default()
            },
            Volume {
                name: "cache".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };

    let failure_policy = PodFailurePolicy {
        rules: vec![
            // Preemption, eviction, node drain: replace the pod without counting a failure.
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
                on_exit_codes: None,
            },
            // The coordinator refused the worker (token, protocol): every pod would; stop the Job.
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("worker".into()),
                    operator: "In".into(),
                    values: vec![EXIT_FATAL],
                }),
                on_pod_conditions: None,
            },
        ],
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&req.experiment_id)),
            namespace: Some(t.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations(req)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner_name(&req.experiment_id),
                uid: owner_uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(n),
            parallelism: Some(n),
            backoff_limit_per_index: Some(
                i32::try_from(t.backoff_limit_per_index).unwrap_or(i32::MAX),
            ),
            // A failed index never fails the Job: the coordinator re-queues its tasks elsewhere.
            max_failed_indexes: Some(n),
            pod_failure_policy: Some(failure_policy),
            pod_replacement_policy: Some("Failed".into()),
            ttl_seconds_after_finished: t
                .ttl_seconds_after_finished
                .map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations(req)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::SecretKey;
    use super::*;

    fn template() -> WorkerTemplate {
        serde_json::from_value(serde_json::json!({
            "namespace": "ml", "coordinatorAddress": "http://mer.ml.svc:50051",
            "tokenSecret": {"name": "mer-token", "key": "token"}, "image": "w:1",
            "gpus": 1, "slotsPerGpu": 2, "maxParallelism": 68
        }))
        .unwrap()
    }

    #[test]
    fn parallelism_follows_runnable_tasks_and_the_cap() {
        let t = template();
        assert_eq!(parallelism_for(&t, 68), 34, "2 slots per pod");
        assert_eq!(parallelism_for(&t, 1000), 68);
        assert_eq!(parallelism_for(&t, 3), 2);
        assert_eq!(parallelism_for(&t, 0), 1);
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(job_name("exp-0007"), "mer-workers-exp-0007");
        let n = owner_name("My_Experiment/with a very long name that goes on and on");
        assert!(
            n.len() <= 63
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{n}"
        );
        assert_ne!(sanitize("A"), sanitize("a"));
    }

    #[test]
    fn job_without_gpus_requests_none_and_refuses_a_missing_owner() {
        let mut t = template();
        t.gpus = 0;
        let j = build_job(&t, &JobRequest::new("e", "n", 5), "uid").unwrap();
        let c = &j.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(c.resources.as_ref().unwrap().limits.is_none());
        assert!(c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "MER_DEVICE" && e.value.as_deref() == Some("cpu")));
        assert!(build_job(&t, &JobRequest::new("e", "n", 5), "").is_err());
        t.token_secret = SecretKey {
            name: String::new(),
            key: "k".into(),
        };
        assert!(build_job(&t, &JobRequest::new("e", "n", 5), "uid").is_err());
    }
}
