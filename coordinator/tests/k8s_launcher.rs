//! The Kubernetes launcher against a mock API server (tower-test's `mock::pair` behind a
//! `kube::Client`, the pattern of kube-rs' controller-rs fixtures): the exact owner ConfigMap and Job
//! that are created, adoption after a restart, the scale-down patch, the deletes on cancel, and a
//! failed pod seen by the pod watch re-queuing its task at once in a real coordinator.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use mer_coordinator::k8s::{
    job_name, Action, JobController, JobRequest, KubeLauncher, WorkerLossSink, WorkerTemplate,
};
use mer_coordinator::rpc::client::{get_status, submit_spec, watch_until_done};
use mer_worker::agent::sim::SimTrainer;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn template() -> WorkerTemplate {
    serde_json::from_value(json!({
        "namespace": "ml",
        "coordinatorAddress": "http://mer.ml.svc:50051",
        "tokenSecret": {"name": "mer-token", "key": "token"},
        "image": "registry.example.org/mer/worker-cuda:0.1.0",
        "gpus": 1,
        "slotsPerGpu": 2,
        "maxParallelism": 68,
        "backoffLimitPerIndex": 3,
        "ttlSecondsAfterFinished": 86400,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "64Gi"}},
        "env": [{"name": "MER_CUDNN_BENCHMARK", "value": "1"}],
        "shmSize": "4Gi",
        "releaseLabels": {"app.kubernetes.io/instance": "mer"}
    }))
    .unwrap()
}

fn mock_launcher() -> (KubeLauncher, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        KubeLauncher::new(Client::new(svc, "ml"), template()),
        handle,
    )
}

/// The next request: (method, URI, JSON body or Null).
async fn next(
    handle: &mut ApiHandle,
) -> (
    Method,
    String,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("no API call within 10 s")
        .expect("service dropped");
    let (method, uri) = (req.method().clone(), req.uri().to_string());
    let ct = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let body = if method == Method::PATCH {
        json!({"content-type": ct, "patch": body})
    } else {
        body
    };
    (method, uri, body, send)
}

fn reply(send: tower_test::mock::SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// The Job the launcher must create for 68 runnable tasks at 2 slots per pod, written out in full.
fn expected_job() -> Value {
    let labels = json!({
        "app.kubernetes.io/component": "mer-worker",
        "app.kubernetes.io/instance": "mer",
        "app.kubernetes.io/name": "mer",
        "mer.dev/experiment": "exp-1"
    });
    let annotations =
        json!({"mer.dev/experiment-id": "exp-1", "mer.dev/experiment-name": "composite"});
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "mer-workers-exp-1",
            "namespace": "ml",
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "mer-exp-exp-1", "uid": "uid-123",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "backoffLimitPerIndex": 3,
            "completionMode": "Indexed",
            "completions": 34,
            "maxFailedIndexes": 34,
            "parallelism": 34,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"status": "True", "type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [3]}}
            ]},
            "podReplacementPolicy": "Failed",
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "worker",
                        "image": "registry.example.org/mer/worker-cuda:0.1.0",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["mer"],
                        "args": ["worker", "--slots", "2", "--device", "cuda:0", "--name", "$(MER_WORKER_NAME)", "--cache-dir", "/var/cache/mer"],
                        "env": [
                            {"name": "MER_COORDINATOR", "value": "http://mer.ml.svc:50051"},
                            {"name": "MER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mer-token", "key": "token", "optional": false}}},
                            {"name": "MER_SLOTS", "value": "2"},
                            {"name": "MER_DEVICE", "value": "cuda"},
                            {"name": "MER_WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "MER_EXPERIMENT", "value": "exp-1"},
                            {"name": "MER_CUDNN_BENCHMARK", "value": "1"}
                        ],
                        "resources": {
                            "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                            "limits": {"memory": "64Gi", "nvidia.com/gpu": "1"}
                        },
                        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "cache", "mountPath": "/var/cache/mer"}]
                    }],
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                    "restartPolicy": "Never",
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}}, {"name": "cache", "emptyDir": {}}]
                }
            }
        }
    })
}

#[tokio::test]
async fn launch_creates_the_owner_then_the_exact_job() {
    let (launcher, mut api) = mock_launcher();
    let run = tokio::spawn(async move {
        launcher
            .launch(&JobRequest::new("exp-1", "composite", 68))
            .await
    });

    let (m, uri, body, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::POST,
            "/api/v1/namespaces/ml/configmaps?&fieldManager=mer-coordinator"
        )
    );
    assert_eq!(body["metadata"]["name"], "mer-exp-exp-1");
    assert_eq!(body["metadata"]["labels"]["mer.dev/experiment"], "exp-1");
    assert_eq!(
        body["data"],
        json!({"experiment-id": "exp-1", "experiment-name": "composite", "job": "mer-workers-exp-1"})
    );
    let mut created = body.clone();
    created["metadata"]["uid"] = json!("uid-123");
    reply(send, StatusCode::CREATED, &created);

    let (m, uri, body, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::POST,
            "/apis/batch/v1/namespaces/ml/jobs?&fieldManager=mer-coordinator"
        )
    );
    assert_eq!(
        body,
        expected_job(),
        "the Job sent:\n{}",
        serde_json::to_string_pretty(&body).unwrap()
    );
    reply(send, StatusCode::CREATED, &body);

    let job = run.await.unwrap().unwrap();
    assert_eq!(
        (
            job.name.as_str(),
            job.namespace.as_str(),
            job.parallelism,
            job.owner_uid.as_str(),
            job.created
        ),
        ("mer-workers-exp-1", "ml", 34, "uid-123", true)
    );
}

#[tokio::test]
async fn a_restarted_coordinator_adopts_existing_objects() {
    let (launcher, mut api) = mock_launcher();
    let run = tokio::spawn(async move {
        launcher
            .launch(&JobRequest::new("exp-1", "composite", 68))
            .await
    });
    let (_, _, _, send) = next(&mut api).await;
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::GET,
            "/api/v1/namespaces/ml/configmaps/mer-exp-exp-1"
        )
    );
    reply(
        send,
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mer-exp-exp-1", "namespace": "ml", "uid": "uid-old"}}),
    );
    let (m, _, body, send) = next(&mut api).await;
    assert_eq!(m, Method::POST);
    assert_eq!(
        body["metadata"]["ownerReferences"][0]["uid"], "uid-old",
        "the Job is owned by the existing ConfigMap"
    );
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::GET,
            "/apis/batch/v1/namespaces/ml/jobs/mer-workers-exp-1"
        )
    );
    let mut existing = expected_job();
    existing["spec"]["parallelism"] = json!(12);
    reply(send, StatusCode::OK, &existing);
    let job = run.await.unwrap().unwrap();
    assert_eq!(
        (job.parallelism, job.created, job.owner_uid.as_str()),
        (12, false, "uid-old")
    );
}

/// Expects the background delete of experiment `id`'s worker Job and answers it with `job`.
async fn expect_job_delete(api: &mut ApiHandle, id: &str, job: &Value) {
    let (m, uri, body, send) = next(api).await;
    assert_eq!(
        (m, uri),
        (
            Method::DELETE,
            format!("/apis/batch/v1/namespaces/ml/jobs/{}?", job_name(id))
        )
    );
    assert_eq!(body, json!({"propagationPolicy": "Background"}));
    reply(send, StatusCode::OK, job);
}

/// Replies to the owner ConfigMap create (409, then the GET) and to the first Job create (409), and
/// answers the Job GET with `existing`.
async fn conflict_then_existing(api: &mut ApiHandle, existing: &Value) {
    let (_, _, _, send) = next(api).await;
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let (_, _, _, send) = next(api).await;
    reply(
        send,
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mer-exp-exp-1", "namespace": "ml", "uid": "uid-123"}}),
    );
    let (m, _, _, send) = next(api).await;
    assert_eq!(m, Method::POST);
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let (m, _, _, send) = next(api).await;
    assert_eq!(m, Method::GET);
    reply(send, StatusCode::OK, existing);
}

#[tokio::test]
async fn a_spent_job_is_replaced_when_tasks_are_back() {
    // Scaled to 0 (its experiment had failed) and completed: with 68 tasks back, it is deleted and
    // created anew.
    let mut spent = expected_job();
    spent["spec"]["parallelism"] = json!(0);
    spent["status"] = json!({"conditions": [{"type": "Complete", "status": "True"}]});
    let (launcher, mut api) = mock_launcher();
    let l2 = launcher.clone();
    let run =
        tokio::spawn(async move { l2.launch(&JobRequest::new("exp-1", "composite", 68)).await });
    conflict_then_existing(&mut api, &spent).await;
    expect_job_delete(&mut api, "exp-1", &spent).await;
    let (m, _, body, send) = next(&mut api).await;
    assert_eq!(m, Method::POST);
    assert_eq!(body, expected_job(), "the same Job as a first launch");
    reply(send, StatusCode::CREATED, &body);
    let job = run.await.unwrap().unwrap();
    assert_eq!((job.parallelism, job.created), (34, true));

    // The old Job still terminating: an error naming it; nothing else is touched.
    let l2 = launcher.clone();
    let run =
        tokio::spawn(async move { l2.launch(&JobRequest::new("exp-1", "composite", 68)).await });
    conflict_then_existing(&mut api, &spent).await;
    expect_job_delete(&mut api, "exp-1", &spent).await;
    let (m, _, _, send) = next(&mut api).await;
    assert_eq!(m, Method::POST);
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let e = run.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("mer-workers-exp-1") && e.contains("still being deleted"),
        "{e}"
    );

    // A live Job (pods running) is adopted, never replaced; so is a spent one when no task is left.
    for (parallelism, runnable) in [(12, 68), (0, 0)] {
        let l2 = launcher.clone();
        let run = tokio::spawn(async move {
            l2.launch(&JobRequest::new("exp-1", "composite", runnable))
                .await
        });
        let mut existing = expected_job();
        existing["spec"]["parallelism"] = json!(parallelism);
        conflict_then_existing(&mut api, &existing).await;
        let job = run.await.unwrap().unwrap();
        assert_eq!((job.parallelism, job.created), (parallelism, false));
    }
}

#[tokio::test]
async fn scale_down_patches_parallelism_and_never_grows() {
    let (launcher, mut api) = mock_launcher();
    let l2 = launcher.clone();
    // 10 tasks left at 2 slots per pod: 5 pods.
    let run = tokio::spawn(async move { l2.scale_down("exp-1", 10).await });
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::GET,
            "/apis/batch/v1/namespaces/ml/jobs/mer-workers-exp-1"
        )
    );
    reply(send, StatusCode::OK, &expected_job());
    let (m, uri, body, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::PATCH,
            "/apis/batch/v1/namespaces/ml/jobs/mer-workers-exp-1?&fieldManager=mer-coordinator"
        )
    );
    assert_eq!(
        body,
        json!({"content-type": "application/merge-patch+json", "patch": {"spec": {"parallelism": 5}}})
    );
    let mut patched = expected_job();
    patched["spec"]["parallelism"] = json!(5);
    reply(send, StatusCode::OK, &patched);
    assert_eq!(run.await.unwrap().unwrap(), Some(5));

    // No task left: down to 0 pods.
    let l2 = launcher.clone();
    let run = tokio::spawn(async move { l2.scale_down("exp-1", 0).await });
    let (_, _, _, send) = next(&mut api).await;
    reply(send, StatusCode::OK, &patched);
    let (m, _, body, send) = next(&mut api).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(body["patch"], json!({"spec": {"parallelism": 0}}));
    patched["spec"]["parallelism"] = json!(0);
    reply(send, StatusCode::OK, &patched);
    assert_eq!(run.await.unwrap().unwrap(), Some(0));

    // More tasks than pods: only a GET, no patch.
    let l2 = launcher.clone();
    let run = tokio::spawn(async move { l2.scale_down("exp-1", 60).await });
    let (m, _, _, send) = next(&mut api).await;
    assert_eq!(m, Method::GET);
    reply(
        send,
        StatusCode::OK,
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mer-workers-exp-1"}, "spec": {"parallelism": 5, "template": {}}}),
    );
    assert_eq!(run.await.unwrap().unwrap(), None);

    // A Job that is gone is not an error.
    let run = tokio::spawn(async move { launcher.scale_down("exp-1", 0).await });
    let (_, _, _, send) = next(&mut api).await;
    reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    assert_eq!(run.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn cancel_deletes_the_job_and_its_owner() {
    let (launcher, mut api) = mock_launcher();
    let l2 = launcher.clone();
    let run = tokio::spawn(async move { l2.cancel("exp-1").await });
    expect_job_delete(&mut api, "exp-1", &expected_job()).await;
    let (m, uri, body, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::DELETE,
            "/api/v1/namespaces/ml/configmaps/mer-exp-exp-1?"
        )
    );
    assert_eq!(body, json!({"propagationPolicy": "Background"}));
    reply(
        send,
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
    );
    assert!(run.await.unwrap().unwrap());

    // Already gone: fine, nothing deleted. Any other API error is reported.
    let l2 = launcher.clone();
    let run = tokio::spawn(async move { l2.cancel("exp-1").await });
    for _ in 0..2 {
        let (_, _, _, send) = next(&mut api).await;
        reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    }
    assert!(!run.await.unwrap().unwrap());
    let run = tokio::spawn(async move { launcher.cancel("exp-1").await });
    let (_, _, _, send) = next(&mut api).await;
    reply(send, StatusCode::FORBIDDEN, &status(403, "Forbidden"));
    let e = run.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("delete worker Job") && e.contains("Forbidden"),
        "{e}"
    );
}

fn pod_event(kind: &str, name: &str, rv: &str, phase: &str, exit: Option<i32>) -> String {
    let mut status = json!({"phase": phase});
    if let Some(code) = exit {
        status["containerStatuses"] = json!([{
            "name": "worker", "image": "w", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": "Error"}}
        }]);
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": rv, "labels": {"app.kubernetes.io/component": "mer-worker"}},
        "status": status
    });
    format!("{}\n", json!({"type": kind, "object": pod}))
}

/// A worker pod fails while it holds a lease with two minutes left: the pod watch reports it and the
/// coordinator puts the task back at once, where another worker leases it (attempt 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_pod_requeues_its_task_at_once() {
    use mer_coordinator::rpc::client::submit_spec;
    use mer_coordinator::rpc::server::{start, ServerConfig};
    use mer_shared::client::{connect, ConnectOptions};
    use mer_shared::proto;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    mer_worker::agent::sim::write_sim_dataset(&dir.path().join("data.safetensors"), 1, 2).unwrap();
    let spec = dir.path().join("exp.toml");
    std::fs::write(
        &spec,
        "name = \"k8s\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nlease_seconds = 120\n",
    )
    .unwrap();
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("state"));
    cfg.token = Some("t".into());
    let coord = start(cfg).await.unwrap();
    let c = connect(&ConnectOptions::new(&coord.url, Some("t".into()))).unwrap();
    let sub = submit_spec(&c, &spec).await.unwrap();
    let get = || async { get_status(&c, &sub.experiment_id).await.unwrap() };

    // The pod's worker registers under its pod name (MER_WORKER_NAME) and leases a task.
    let pod = "mer-workers-exp-1-0-x7k2p";
    let mut w = c.worker.clone();
    let reg = |name: &str| proto::RegisterRequest {
        protocol: proto::PROTOCOL_VERSION,
        name: name.into(),
        devices: vec!["cuda:0".into()],
        slots: 1,
        version: "t".into(),
    };
    let a = w.register(reg(pod)).await.unwrap().into_inner();
    let lease = w
        .lease(proto::LeaseRequest {
            worker_id: a.worker_id.clone(),
            slot: 0,
            wait_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(lease.attempt, 1);
    assert_eq!(get().await.tasks_running, 1);

    // The pod watch against the mock API server.
    let (launcher, mut api) = mock_launcher();
    let stop = CancellationToken::new();
    let sink: Arc<dyn WorkerLossSink> = coord.scheduler().clone();
    let watch = launcher.watch_pods(
        sink,
        Some(coord.scheduler().metrics().clone()),
        stop.clone(),
    );
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(m, Method::GET);
    assert!(
        uri.starts_with("/api/v1/namespaces/ml/pods?&watch=true"),
        "{uri}"
    );
    assert!(
        uri.contains("labelSelector=app.kubernetes.io%2Fcomponent%3Dmer-worker")
            && uri.contains("resourceVersion=0"),
        "{uri}"
    );
    let events = [
        pod_event("ADDED", pod, "100", "Running", None),
        pod_event(
            "ADDED",
            "mer-workers-exp-1-1-aaaaa",
            "101",
            "Succeeded",
            None,
        ),
        pod_event("MODIFIED", pod, "102", "Failed", Some(137)),
        pod_event("MODIFIED", pod, "103", "Failed", Some(137)),
    ]
    .concat();
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(events.into_bytes()))
            .unwrap(),
    );

    // The watch ended; it resumes from the last resource version seen.
    let (m, uri, _, _pending) = next(&mut api).await;
    assert_eq!(m, Method::GET);
    assert!(uri.contains("resourceVersion=103"), "{uri}");

    // The task is back in the queue now (not in 120 s), counted as lost once.
    let st = get().await;
    assert_eq!((st.tasks_running, st.lost), (0, 1), "{st:?}");
    let b = w
        .register(reg("mer-workers-exp-1-0-retry"))
        .await
        .unwrap()
        .into_inner();
    let again = w
        .lease(proto::LeaseRequest {
            worker_id: b.worker_id,
            slot: 0,
            wait_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        (again.task_key.as_str(), again.attempt),
        (lease.task_key.as_str(), 2)
    );
    // The failed pod's late heartbeat is told to stop.
    let hb = w
        .heartbeat(proto::HeartbeatRequest {
            lease_id: lease.lease_id.clone(),
            worker_id: a.worker_id.clone(),
            task_key: lease.task_key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!hb.keep_going);
    let text = coord.scheduler().metrics().encode().unwrap();
    let p = mer_coordinator::metrics::parse_text(&text).unwrap();
    assert_eq!(
        mer_coordinator::metrics::series_value(
            &p,
            "mer_workers_lost_total",
            &[("source", "kubernetes")]
        ),
        Some(1.0),
        "reported once"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .unwrap()
        .unwrap();
    coord.shutdown().await.unwrap();
}

/// The coordinator's controller: a running `launcher = "kubernetes"` experiment gets its Job (with the
/// spec's image and GPUs), a local experiment gets none, and cancelling deletes the Job and its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_launches_and_cleans_up_with_the_experiment() {
    use mer_coordinator::k8s::{Action, JobController};
    use mer_coordinator::rpc::client::submit_spec;
    use mer_coordinator::rpc::server::{start, ServerConfig};
    use mer_shared::client::{connect, ConnectOptions};
    use mer_shared::proto;

    let dir = tempfile::tempdir().unwrap();
    mer_worker::agent::sim::write_sim_dataset(&dir.path().join("data.safetensors"), 1, 2).unwrap();
    let k8s = dir.path().join("k8s.toml");
    std::fs::write(
        &k8s,
        "name = \"composite\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nlauncher = \"kubernetes\"\n[kubernetes]\nimage = \"mer-worker:9\"\nworkers = 68\ngpus_per_worker = 2\nslots_per_device = 1\n[sweep]\nalpha = [1, 2]\n",
    )
    .unwrap();
    let local = dir.path().join("local.toml");
    std::fs::write(
        &local,
        "name = \"local\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n",
    )
    .unwrap();
    let coord = start(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state"),
    ))
    .await
    .unwrap();
    let c = connect(&ConnectOptions::new(&coord.url, None)).unwrap();
    let sub = submit_spec(&c, &k8s).await.unwrap();
    submit_spec(&c, &local).await.unwrap();

    let (launcher, mut api) = mock_launcher();
    let mut ctl = JobController::new(launcher, coord.scheduler().clone());
    let id = sub.experiment_id.clone();
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    let (_, uri, body, send) = next(&mut api).await;
    assert!(
        uri.starts_with("/api/v1/namespaces/ml/configmaps?"),
        "{uri}"
    );
    let mut cm = body.clone();
    cm["metadata"]["uid"] = json!("uid-c");
    reply(send, StatusCode::CREATED, &cm);
    let (_, uri, job, send) = next(&mut api).await;
    assert!(
        uri.starts_with("/apis/batch/v1/namespaces/ml/jobs?"),
        "{uri}"
    );
    let pod = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(pod["image"], "mer-worker:9");
    assert_eq!(pod["resources"]["limits"]["nvidia.com/gpu"], "2");
    // sub.tasks unfinished tasks at 2 GPUs x 1 slot per pod.
    let want = sub.tasks.div_ceil(2) as i64;
    assert_eq!(job["spec"]["parallelism"].as_i64(), Some(want));
    assert_eq!(
        job["metadata"]["annotations"]["mer.dev/experiment-id"],
        id.as_str()
    );
    reply(send, StatusCode::CREATED, &job);
    let (actions, mut ctl) = pass.await.unwrap();
    assert_eq!(
        actions,
        vec![(id.clone(), Action::Launched(want as i32))],
        "only the kubernetes experiment"
    );

    // Cancel: the next pass deletes the Job and its owner; later passes leave it alone.
    let r = c
        .client
        .clone()
        .cancel(proto::CancelRequest {
            experiment_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.cancelled);
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::DELETE,
            format!(
                "/apis/batch/v1/namespaces/ml/jobs/{}?",
                job["metadata"]["name"].as_str().unwrap()
            )
            .as_str()
        )
    );
    reply(send, StatusCode::OK, &job);
    let (m, uri, _, send) = next(&mut api).await;
    assert_eq!(
        (m, uri.as_str()),
        (
            Method::DELETE,
            format!(
                "/api/v1/namespaces/ml/configmaps/{}?",
                cm["metadata"]["name"].as_str().unwrap()
            )
            .as_str()
        )
    );
    reply(
        send,
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
    );
    let (actions, mut ctl) = pass.await.unwrap();
    assert_eq!(actions, vec![(id.clone(), Action::Deleted)]);
    assert!(ctl.reconcile_once().await.is_empty(), "no further API call");
    coord.shutdown().await.unwrap();
}

/// When an experiment's tasks are all done, the next controller pass patches its Job down to 0 pods,
/// once; while tasks remain and the Job is small enough nothing is patched.
/// A real coordinator (SQLite, gRPC on loopback) and one submitted experiment `name` that uses the
/// Kubernetes launcher: 3 folds (one subject per part) of a prior and a target task, at most 4 pods.
/// Returns the coordinator, its clients, the spec file and the experiment id.
async fn k8s_experiment(
    dir: &std::path::Path,
    name: &str,
) -> (
    mer_coordinator::rpc::server::CoordinatorHandle,
    mer_shared::client::Clients,
    std::path::PathBuf,
    String,
) {
    use mer_coordinator::rpc::client::submit_spec;
    use mer_coordinator::rpc::server::{start, ServerConfig};
    use mer_shared::client::{connect, ConnectOptions};
    mer_worker::agent::sim::write_sim_dataset(&dir.join("data.safetensors"), 1, 2).unwrap();
    let spec = dir.join("k8s.toml");
    std::fs::write(
        &spec,
        format!("name = \"{name}\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nlauncher = \"kubernetes\"\n[kubernetes]\nimage = \"w:1\"\nworkers = 4\ngpus_per_worker = 1\n"),
    )
    .unwrap();
    let coord = start(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("state"),
    ))
    .await
    .unwrap();
    let c = connect(&ConnectOptions::new(&coord.url, None)).unwrap();
    let id = submit_spec(&c, &spec).await.unwrap().experiment_id;
    (coord, c, spec, id)
}

/// A worker agent with 2 slots running the sim `trainer` until `stop`.
fn sim_agent(
    url: &str,
    cache: std::path::PathBuf,
    trainer: std::sync::Arc<mer_worker::agent::sim::SimTrainer>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use mer_shared::client::ConnectOptions;
    use mer_worker::agent::trainer::Trainer;
    use mer_worker::agent::{run_agent, AgentConfig};
    let mut a = AgentConfig::new(ConnectOptions::new(url, None), cache);
    a.slots = 2;
    a.poll_wait = Duration::from_millis(200);
    let t = trainer as std::sync::Arc<dyn Trainer>;
    tokio::spawn(async move {
        run_agent(a, t, stop).await.unwrap();
    })
}

/// The controller's first pass over a new experiment: it creates the owner ConfigMap and the Job, which
/// the mock API accepts (201). Returns the controller, the Job and the pass's actions.
async fn first_pass(
    mut ctl: mer_coordinator::k8s::JobController,
    api: &mut ApiHandle,
) -> (
    mer_coordinator::k8s::JobController,
    Value,
    Vec<(String, mer_coordinator::k8s::Action)>,
) {
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    let (_, _, mut cm, send) = next(api).await;
    cm["metadata"]["uid"] = json!("u");
    reply(send, StatusCode::CREATED, &cm);
    let (_, _, job, send) = next(api).await;
    reply(send, StatusCode::CREATED, &job);
    let (actions, ctl) = pass.await.unwrap();
    (ctl, job, actions)
}

/// A controller pass after the experiment ended: the Job (`job`, as the mock API returns it) is scaled
/// to 0 pods. Returns the controller, the Job as patched and the pass's actions.
async fn scale_to_zero_pass(
    mut ctl: JobController,
    api: &mut ApiHandle,
    job: &Value,
) -> (JobController, Value, Vec<(String, Action)>) {
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    let (m, _, _, send) = next(api).await;
    assert_eq!(m, Method::GET);
    reply(send, StatusCode::OK, job);
    let (m, _, body, send) = next(api).await;
    assert_eq!(
        (m, body["patch"].clone()),
        (Method::PATCH, json!({"spec": {"parallelism": 0}}))
    );
    let mut spent = job.clone();
    spent["spec"]["parallelism"] = json!(0);
    reply(send, StatusCode::OK, &spent);
    let (actions, ctl) = pass.await.unwrap();
    (ctl, spent, actions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_scales_a_finished_experiment_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (coord, c, _spec, id) = k8s_experiment(dir.path(), "k8s-done").await;
    let (launcher, mut api) = mock_launcher();
    let ctl = JobController::new(launcher, coord.scheduler().clone());

    // First pass: the Job, 4 pods (capped by workers = 4).
    let (mut ctl, job, actions) = first_pass(ctl, &mut api).await;
    assert_eq!(job["spec"]["parallelism"], 4);
    assert_eq!(actions, vec![(id.clone(), Action::Launched(4))]);

    // Second pass while it is still running with more tasks than pods: a GET, no patch.
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    let (m, _, _, send) = next(&mut api).await;
    assert_eq!(m, Method::GET);
    reply(send, StatusCode::OK, &job);
    let (actions, ctl) = pass.await.unwrap();
    assert!(actions.is_empty(), "{actions:?}");

    // A worker runs everything.
    let stop = CancellationToken::new();
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let agent = sim_agent(&coord.url, dir.path().join("cache"), trainer, stop.clone());
    assert_eq!(
        watch_until_done(&c, &id, |_| {}).await.unwrap().state,
        "done"
    );

    // Done: down to 0, and the experiment is left alone afterwards.
    let (mut ctl, _, actions) = scale_to_zero_pass(ctl, &mut api, &job).await;
    assert_eq!(actions, vec![(id.clone(), Action::Scaled(0))]);
    assert!(ctl.reconcile_once().await.is_empty());
    stop.cancel();
    agent.await.unwrap();
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_experiment_resubmitted_gets_a_new_job() {
    let dir = tempfile::tempdir().unwrap();
    let (coord, c, spec, id) = k8s_experiment(dir.path(), "k8s-retry").await;
    let (launcher, mut api) = mock_launcher();
    let ctl = JobController::new(launcher, coord.scheduler().clone());

    // Launch.
    let (ctl, job, actions) = first_pass(ctl, &mut api).await;
    assert_eq!(actions, vec![(id.clone(), Action::Launched(4))]);

    // One fold fails for good: the experiment fails and its Job goes down to 0.
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    trainer.fail_fold(Some("samm/006"));
    let stop = CancellationToken::new();
    let agent = sim_agent(
        &coord.url,
        dir.path().join("cache"),
        trainer.clone(),
        stop.clone(),
    );
    let st = watch_until_done(&c, &id, |_| {}).await.unwrap();
    assert_eq!(
        (st.state.as_str(), st.tasks_failed),
        ("failed", 2),
        "its prior and target"
    );
    let (mut ctl, spent, actions) = scale_to_zero_pass(ctl, &mut api, &job).await;
    assert_eq!(actions, vec![(id.clone(), Action::Scaled(0))]);
    assert!(
        ctl.reconcile_once().await.is_empty(),
        "left alone once ended"
    );

    // Fixed and re-submitted: the spent Job is replaced, the two tasks run, and it ends done.
    trainer.fail_fold(None);
    let again = submit_spec(&c, &spec).await.unwrap();
    assert_eq!(
        (again.experiment_id.as_str(), again.retried),
        (id.as_str(), 2)
    );
    let pass = tokio::spawn(async move { (ctl.reconcile_once().await, ctl) });
    conflict_then_existing(&mut api, &spent).await;
    expect_job_delete(&mut api, &id, &spent).await;
    let (m, _, body, send) = next(&mut api).await;
    assert_eq!(m, Method::POST);
    assert_eq!(body["spec"]["parallelism"], 2, "2 tasks, one slot per pod");
    reply(send, StatusCode::CREATED, &body);
    let (actions, _ctl) = pass.await.unwrap();
    assert_eq!(actions, vec![(id.clone(), Action::Launched(2))]);
    let st = watch_until_done(&c, &id, |_| {}).await.unwrap();
    assert_eq!((st.state.as_str(), st.tasks_failed), ("done", 0));
    stop.cancel();
    agent.await.unwrap();
    coord.shutdown().await.unwrap();
}
