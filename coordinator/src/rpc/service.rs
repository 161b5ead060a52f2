//! The coordinator's gRPC services: `Worker` (register, lease, heartbeat, complete, fail), `Artifacts`
//! (content-addressed streamed upload and download) and `Client` (submit, get, watch, list, cancel,
//! results). Token and protocol checks run in front of them (see [`crate::rpc::auth`]).

use crate::error::CoordError;
use crate::plan::{expand_multi, TaskKind};
use crate::results::writer::{write_run, StoredRun, WrittenRun};
use crate::scheduler::lease::Progress;
use crate::scheduler::{CompleteOutcome, FailOutcome, Scheduler};
use crate::spec::parse_spec;
use mer_shared::artifact_store::{valid_hash, ArtifactStore};
use mer_shared::digest::sha256_hex;
use mer_shared::fold::FoldResult;
use mer_shared::loso::Role;
use mer_shared::metrics::Confusion;
use mer_shared::proto::{self, PROTOCOL_VERSION};
use mer_shared::task::WireDataset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// State shared by the services.
pub struct Shared {
    /// The scheduler.
    pub sched: Arc<Scheduler>,
    /// The artifact store.
    pub artifacts: ArtifactStore,
    /// Where each experiment's results are written (`<dir>/<experiment id>/`).
    pub results_dir: PathBuf,
    /// Heartbeat interval suggested to workers.
    pub heartbeat: Duration,
    /// Longest lease long-poll.
    pub max_wait: Duration,
    /// Serialises result writing.
    pub results_lock: tokio::sync::Mutex<()>,
    /// Cancelled when the coordinator shuts down (ends long polls and watch streams).
    pub stop: tokio_util::sync::CancellationToken,
    /// Whether every call must carry the coordinator's token. A spec with methods of its own runs its
    /// commands on every worker, so only an authenticated coordinator accepts one.
    pub authenticated: bool,
}

fn status_of(e: impl Into<CoordError>) -> Status {
    let e = e.into();
    match &e {
        CoordError::NotFound(_) => Status::not_found(e.to_string()),
        CoordError::Invalid { .. }
        | CoordError::Spec { .. }
        | CoordError::Dataset { .. }
        | CoordError::Plan(_)
        | CoordError::Json { .. } => Status::invalid_argument(e.to_string()),
        CoordError::Shared(
            mer_shared::SharedError::HashMismatch { .. } | mer_shared::SharedError::Invalid { .. },
        ) => Status::invalid_argument(e.to_string()),
        CoordError::Protocol { .. } => Status::failed_precondition(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// Writes the current run folder of experiment `id` (under the results lock) and returns it.
pub async fn write_experiment_results(shared: &Shared, id: &str) -> Result<WrittenRun, CoordError> {
    let plan = shared
        .sched
        .plan(id)
        .ok_or_else(|| CoordError::NotFound(format!("experiment {id}")))?;
    let run = StoredRun::read(shared.sched.store(), id, plan).await?;
    let _guard = shared.results_lock.lock().await;
    write_run(
        run,
        &shared.artifacts,
        &shared.results_dir.join(id),
        shared.sched.metrics(),
    )
}

/// Checks a target task's result against its task: subject, scheme, classes, and that the confusion
/// counts equal the per-sample predictions (and the counts sent alongside).
pub fn validate_result(
    payload: &crate::plan::TaskPayload,
    r: &FoldResult,
    sent: Option<&proto::ConfusionCounts>,
) -> Result<(), CoordError> {
    let bad =
        |why: String| CoordError::invalid(format!("result of fold {}", payload.test_subject), why);
    if r.test_subject != payload.test_subject {
        return Err(bad(format!("it is for test subject '{}'", r.test_subject)));
    }
    if r.scheme != payload.scheme.key() {
        return Err(bad(format!(
            "it uses scheme '{}', the task '{}'",
            r.scheme,
            payload.scheme.key()
        )));
    }
    let k = payload.scheme.num_classes();
    if r.confusion.classes() != k {
        return Err(bad(format!(
            "{} classes in its confusion counts, the scheme has {k}",
            r.confusion.classes()
        )));
    }
    if r.predictions.is_empty() {
        return Err(bad("no predictions".into()));
    }
    let held = payload.held_out();
    let mut c = Confusion::new(k);
    for p in &r.predictions {
        let subject = format!("{}/{}", p.record.dataset, p.record.subject);
        if held.role(&subject) != Role::Test {
            return Err(bad(format!(
                "sample {} is not of the task's test subject(s)",
                p.id
            )));
        }
        c.add(p.record.label, p.record.pred)
            .map_err(|e| bad(format!("sample {}: {e}", p.id)))?;
    }
    if c != r.confusion {
        return Err(bad(
            "its confusion counts disagree with its per-sample predictions".into(),
        ));
    }
    if let Some(s) = sent {
        let flat: Vec<u64> = r.confusion.rows().iter().flatten().copied().collect();
        if s.classes as usize != k || s.counts != flat {
            return Err(bad(
                "the confusion counts sent disagree with the result's".into()
            ));
        }
    }
    Ok(())
}

/// The wire form of a granted lease.
fn task_lease(g: crate::scheduler::Grant) -> proto::TaskLease {
    proto::TaskLease {
        lease_id: g.lease_id,
        task_key: g.def.key.clone(),
        kind: g.def.kind.key().into(),
        fold: g.def.fold.clone(),
        payload_json: g.payload_json.to_string(),
        dataset_hash: g.def.payload.dataset_hash.clone(),
        prior_checkpoint: g.prior_checkpoint.unwrap_or_default(),
        attempt: g.attempt,
        lease_ttl_ms: g.ttl.as_millis() as u64,
        sweep_point: g.def.sweep_point,
        devices: g.devices,
    }
}

/// The `Worker` service.
pub struct WorkerService(pub Arc<Shared>);

#[tonic::async_trait]
impl proto::worker_server::Worker for WorkerService {
    async fn register(
        &self,
        req: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterReply>, Status> {
        let r = req.into_inner();
        if r.protocol != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: the coordinator speaks protocol {PROTOCOL_VERSION}, worker '{}' speaks {}",
                r.name, r.protocol
            )));
        }
        if r.slots == 0 {
            return Err(Status::invalid_argument("a worker needs at least one slot"));
        }
        let id = self
            .0
            .sched
            .register_worker(&r.name, &r.devices, r.slots, &r.version);
        tracing::info!(worker = %id, devices = ?r.devices, slots = r.slots, "worker registered");
        Ok(Response::new(proto::RegisterReply {
            worker_id: id,
            lease_ttl_ms: 0,
            heartbeat_ms: self.0.heartbeat.as_millis() as u64,
        }))
    }

    async fn lease(
        &self,
        req: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        let r = req.into_inner();
        if !self.0.sched.knows_worker(&r.worker_id) {
            // Registered with a previous coordinator process: keep it.
            self.0.sched.adopt_worker(&r.worker_id);
        }
        self.0.sched.note_devices(&r.worker_id, &r.devices);
        let wait = Duration::from_millis(r.wait_ms).min(self.0.max_wait);
        let grant = tokio::select! {
            g = self.0.sched.lease_within(&r.worker_id, r.slot, wait, r.seconds_left.map(Duration::from_secs)) => g,
            _ = self.0.stop.cancelled() => None,
        };
        Ok(Response::new(proto::LeaseReply {
            task: grant.map(task_lease),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatReply>, Status> {
        let r = req.into_inner();
        let p = Progress {
            stage: r.stage,
            epoch: r.epoch,
            epochs: r.epochs,
            loss: r.loss,
            samples_per_s: r.samples_per_s,
            device: crate::scheduler::lease::device_label(&r.device),
            gpu_memory_bytes: r.gpu_memory_bytes,
        };
        let answer = self
            .0
            .sched
            .heartbeat(&r.lease_id, &r.worker_id, &r.task_key, p, &r.devices);
        Ok(Response::new(proto::HeartbeatReply {
            keep_going: answer.keep_going,
            reason: answer.reason,
        }))
    }

    async fn complete(
        &self,
        req: Request<proto::CompleteRequest>,
    ) -> Result<Response<proto::CompleteReply>, Status> {
        let r = req.into_inner();
        let def = self
            .0
            .sched
            .task_def(&r.task_key)
            .ok_or_else(|| Status::not_found(format!("unknown task {}", r.task_key)))?;
        let (result_json, checkpoint) = match def.kind {
            TaskKind::Target => {
                let fr: FoldResult = serde_json::from_str(&r.fold_result_json).map_err(|e| {
                    Status::invalid_argument(format!(
                        "result of task {}: invalid FoldResult JSON: {e}",
                        r.task_key
                    ))
                })?;
                validate_result(&def.payload, &fr, r.confusion.as_ref()).map_err(status_of)?;
                (Some(r.fold_result_json), None)
            }
            TaskKind::Prior => {
                if !valid_hash(&r.checkpoint_hash)
                    || self.0.artifacts.size_of(&r.checkpoint_hash).is_none()
                {
                    return Err(Status::invalid_argument(format!(
                        "prior task {}: checkpoint '{}' was not uploaded (upload the artifact before completing)",
                        r.task_key, r.checkpoint_hash
                    )));
                }
                (None, Some(r.checkpoint_hash))
            }
        };
        let out = self
            .0
            .sched
            .complete(
                &r.lease_id,
                &r.worker_id,
                &r.task_key,
                result_json,
                checkpoint,
            )
            .await
            .map_err(status_of)?;
        let next = if r.lease_next && !self.0.stop.is_cancelled() {
            if !self.0.sched.knows_worker(&r.worker_id) {
                self.0.sched.adopt_worker(&r.worker_id);
            }
            self.0
                .sched
                .try_lease_slot(&r.worker_id, r.slot)
                .map(task_lease)
        } else {
            None
        };
        Ok(Response::new(proto::CompleteReply {
            outcome: match out {
                CompleteOutcome::Accepted => "accepted",
                CompleteOutcome::Duplicate => "duplicate",
            }
            .into(),
            next,
        }))
    }

    async fn fail(
        &self,
        req: Request<proto::FailRequest>,
    ) -> Result<Response<proto::FailReply>, Status> {
        let r = req.into_inner();
        let out = if r.interrupted {
            tracing::info!(task = %r.task_key, worker = %r.worker_id, "task released unfinished: {}", r.error);
            self.0
                .sched
                .release_interrupted(&r.lease_id, &r.task_key, &r.error)
                .await
        } else {
            tracing::warn!(task = %r.task_key, worker = %r.worker_id, retryable = r.retryable, "task failed: {}", r.error);
            self.0
                .sched
                .fail(&r.lease_id, &r.task_key, &r.error, r.retryable)
                .await
        }
        .map_err(status_of)?;
        Ok(Response::new(proto::FailReply {
            outcome: match out {
                FailOutcome::Retry => "retry",
                FailOutcome::GaveUp => "gave_up",
                FailOutcome::Ignored => "ignored",
                FailOutcome::Interrupted => "interrupted",
            }
            .into(),
        }))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `Artifacts` service.
pub struct ArtifactsService(pub Arc<Shared>);

#[tonic::async_trait]
impl proto::artifacts_server::Artifacts for ArtifactsService {
    async fn upload(
        &self,
        req: Request<Streaming<proto::ArtifactChunk>>,
    ) -> Result<Response<proto::UploadReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty upload"))?;
        let hash = first.sha256.clone();
        if !valid_hash(&hash) {
            return Err(Status::invalid_argument(format!(
                "upload: '{hash}' is not a sha256 hex digest"
            )));
        }
        let kind = first.kind.clone();
        let declared = first.size;
        if self.0.artifacts.size_of(&hash).is_some() {
            // Already stored: drain and confirm (the stored file's hash was checked when it was written).
            while stream.message().await?.is_some() {}
            return Ok(Response::new(proto::UploadReply {
                sha256: hash,
                size: declared,
            }));
        }
        let mut w = self.0.artifacts.begin(&hash).map_err(status_of)?;
        w.write(&first.data).map_err(status_of)?;
        while let Some(c) = stream.message().await? {
            w.write(&c.data).map_err(status_of)?;
        }
        if w.size() != declared {
            return Err(Status::invalid_argument(format!(
                "artifact {hash}: announced {declared} bytes, received {}",
                w.size()
            )));
        }
        let (h, size) = tokio::task::spawn_blocking(move || w.finish())
            .await
            .map_err(|e| Status::internal(format!("artifact writer: {e}")))?
            .map_err(status_of)?;
        let (hc, kc) = (h.clone(), kind);
        self.0
            .sched
            .store()
            .write_nowait(move |tx| tx.record_artifact(&hc, size, &kc));
        Ok(Response::new(proto::UploadReply { sha256: h, size }))
    }

    type DownloadStream = BoxStream<proto::ArtifactChunk>;

    async fn download(
        &self,
        req: Request<proto::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let hash = req.into_inner().sha256;
        let size = self
            .0
            .artifacts
            .size_of(&hash)
            .ok_or_else(|| Status::not_found(format!("no artifact {hash}")))?;
        let path = self.0.artifacts.path_of(&hash);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<proto::ArtifactChunk, Status>>(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                    return;
                }
            };
            let mut buf = vec![0u8; proto::CHUNK_BYTES];
            let mut first = true;
            loop {
                let n = match f.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "{}: {e}",
                            path.display()
                        ))));
                        return;
                    }
                };
                if n == 0 && !first {
                    return;
                }
                let chunk = proto::ArtifactChunk {
                    sha256: if first { hash.clone() } else { String::new() },
                    size: if first { size } else { 0 },
                    kind: String::new(),
                    data: buf[..n].to_vec(),
                };
                first = false;
                if tx.blocking_send(Ok(chunk)).is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn has(
        &self,
        req: Request<proto::HasRequest>,
    ) -> Result<Response<proto::HasReply>, Status> {
        let h = req.into_inner().sha256;
        let size = self.0.artifacts.size_of(&h);
        Ok(Response::new(proto::HasReply {
            present: size.is_some(),
            size: size.unwrap_or(0),
        }))
    }
}

/// The `Client` service.
pub struct ClientService(pub Arc<Shared>);

impl ClientService {
    fn get_status(&self, id: &str) -> Result<proto::ExperimentStatus, Status> {
        self.0
            .sched
            .status(id)
            .ok_or_else(|| Status::not_found(format!("no experiment '{id}'")))
    }
}

/// Identity of an experiment: its name and the set of its task keys (re-submitting the same experiment
/// from another folder or machine finds the same one).
pub fn experiment_identity(plan: &crate::plan::Plan) -> String {
    let mut keys: Vec<&str> = plan.tasks.iter().map(|t| t.key.as_str()).collect();
    keys.sort_unstable();
    sha256_hex(format!("{}|{}", plan.experiment, keys.join(",")).as_bytes())
}

#[tonic::async_trait]
impl proto::client_server::Client for ClientService {
    async fn submit(
        &self,
        req: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitReply>, Status> {
        let r = req.into_inner();
        if r.protocol != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: the coordinator speaks protocol {PROTOCOL_VERSION}, the client {}",
                r.protocol
            )));
        }
        let file = if r.spec_path.is_empty() {
            "<submitted spec>".to_string()
        } else {
            r.spec_path.clone()
        };
        let mut spec = parse_spec(&file, &r.spec_toml).map_err(status_of)?;
        // Resolve relative dataset paths as `load_spec` does on the client, so both agree on the spec hash.
        spec.resolve_relative_to(Path::new(&r.spec_path));
        let wire: Vec<WireDataset> =
            serde_json::from_str(&r.dataset_summary_json).map_err(|e| {
                Status::invalid_argument(format!("{file}: dataset summaries: invalid JSON: {e}"))
            })?;
        let mut ds = BTreeMap::new();
        for w in wire {
            if self.0.artifacts.size_of(&w.dataset.hash).is_none() {
                return Err(Status::failed_precondition(format!(
                    "dataset {} (sha256 {}) has not been uploaded to the coordinator",
                    w.dataset.path.display(),
                    w.dataset.hash
                )));
            }
            ds.insert(w.tag, w.dataset);
        }
        let files: BTreeMap<String, Vec<mer_shared::user_method::ShippedFile>> =
            if r.method_files_json.is_empty() {
                BTreeMap::new()
            } else {
                serde_json::from_str(&r.method_files_json).map_err(|e| {
                    Status::invalid_argument(format!("{file}: method files: invalid JSON: {e}"))
                })?
            };
        for (name, list) in &files {
            for f in list {
                if self.0.artifacts.size_of(&f.sha256).is_none() {
                    return Err(Status::failed_precondition(format!(
                        "methods.{name}: file {} (sha256 {}) has not been uploaded to the coordinator",
                        f.path, f.sha256
                    )));
                }
            }
        }
        if !spec.methods.user.is_empty() && !self.0.authenticated {
            return Err(Status::permission_denied(format!(
                "{file}: the spec defines methods of its own ({}), which run commands on every worker; this coordinator runs without a token, so it accepts none (start it with a token)",
                spec.methods.user.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        spec.set_method_files(files);
        let plan = expand_multi(&spec, &ds).map_err(status_of)?;
        let identity = experiment_identity(&plan);
        let s = self
            .0
            .sched
            .submit(crate::scheduler::Submission {
                name: spec.name.clone(),
                identity,
                spec_hash: spec.spec_hash(),
                spec_toml: r.spec_toml.clone(),
                plan,
                max_attempts: spec.max_attempts,
                lease: Duration::from_secs(spec.lease_seconds.max(1)),
            })
            .await
            .map_err(status_of)?;
        tracing::info!(experiment = %s.id, tasks = s.tasks, reused = s.reused, existing = s.existing, retried = s.retried, "experiment submitted");
        Ok(Response::new(proto::SubmitReply {
            experiment_id: s.id,
            tasks: s.tasks as u32,
            reused: s.reused as u32,
            existing: s.existing,
            retried: s.retried as u32,
        }))
    }

    async fn get(
        &self,
        req: Request<proto::GetRequest>,
    ) -> Result<Response<proto::ExperimentStatus>, Status> {
        Ok(Response::new(
            self.get_status(&req.into_inner().experiment_id)?,
        ))
    }

    type WatchStream = BoxStream<proto::ExperimentStatus>;

    async fn watch(
        &self,
        req: Request<proto::GetRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let id = req.into_inner().experiment_id;
        let mut rx = self
            .0
            .sched
            .subscribe(&id)
            .ok_or_else(|| Status::not_found(format!("no experiment '{id}'")))?;
        let sched = self.0.sched.clone();
        let stop = self.0.stop.clone();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                if stop.is_cancelled() {
                    return;
                }
                let Some(s) = sched.status(&id) else { return };
                let done = s.state != "running";
                if tx.send(Ok(s)).await.is_err() || done {
                    return;
                }
                // At most ~10 updates a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn list(
        &self,
        _req: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListReply>, Status> {
        let experiments = self
            .0
            .sched
            .experiment_ids()
            .iter()
            .filter_map(|id| self.0.sched.status(id))
            .collect();
        Ok(Response::new(proto::ListReply { experiments }))
    }

    async fn cancel(
        &self,
        req: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelReply>, Status> {
        let id = req.into_inner().experiment_id;
        let cancelled = self.0.sched.cancel(&id).await.map_err(status_of)?;
        Ok(Response::new(proto::CancelReply { cancelled }))
    }

    async fn finished(
        &self,
        req: Request<proto::FinishedRequest>,
    ) -> Result<Response<proto::FinishedReply>, Status> {
        let keys = req.into_inner().task_keys;
        let db = self.0.sched.store().path().to_path_buf();
        let (seconds, plans) =
            tokio::task::spawn_blocking(move || crate::store::finished_task_seconds(&db))
                .await
                .map_err(|e| Status::internal(format!("reading the store: {e}")))?
                .map_err(status_of)?;
        let finished = keys
            .into_iter()
            .filter(|k| seconds.contains_key(k))
            .collect();
        let means: Vec<(String, String, f64)> =
            crate::plan::preview::mean_seconds(&seconds, &plans)
                .into_iter()
                .map(|((kind, method), s)| (kind, method, s))
                .collect();
        Ok(Response::new(proto::FinishedReply {
            finished,
            mean_seconds_json: serde_json::to_string(&means)
                .map_err(|e| Status::internal(e.to_string()))?,
        }))
    }

    async fn results(
        &self,
        req: Request<proto::ResultsRequest>,
    ) -> Result<Response<proto::ResultsReply>, Status> {
        let id = req.into_inner().experiment_id;
        let written = write_experiment_results(&self.0, &id)
            .await
            .map_err(status_of)?;
        let complete = written.complete();
        let mut files = written.files;
        let results_json = files.remove("results.json").unwrap_or_default();
        let summary_md = files.remove("summary.md").unwrap_or_default();
        Ok(Response::new(proto::ResultsReply {
            results_json,
            summary_md,
            complete,
            files: files.into_iter().collect(),
        }))
    }
}
