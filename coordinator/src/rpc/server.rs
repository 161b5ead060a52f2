//! Running a coordinator: the SQLite store, the scheduler, the lease reaper, the results writer and the
//! gRPC services behind the token/protocol interceptor, optionally over TLS, with graceful shutdown.

use crate::error::CoordError;
use crate::rpc::auth::ServerAuth;
use crate::rpc::service::{
    write_experiment_results, ArtifactsService, ClientService, Shared, WorkerService,
};
use crate::scheduler::{SchedConfig, Scheduler};
use crate::store::Store;
use mer_shared::artifact_store::ArtifactStore;
use mer_shared::client::MAX_MESSAGE_BYTES;
use mer_shared::proto;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How to run a coordinator.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Folder of the state database, the artifacts and the results.
    pub state_dir: PathBuf,
    /// Shared-secret bearer token (None: no authentication; only for loopback).
    pub token: Option<String>,
    /// TLS, when given.
    pub tls: Option<TlsFiles>,
    /// Scheduler settings.
    pub sched: SchedConfig,
    /// Heartbeat interval suggested to workers.
    pub heartbeat: Duration,
    /// Longest lease long-poll.
    pub max_wait: Duration,
    /// How often expired leases are looked for.
    pub reap_every: Duration,
    /// HTTP port for `/metrics`, `/healthz` and `/readyz` (None: not served). See `crate::rpc::http`.
    pub http_listen: Option<SocketAddr>,
    /// Worker pod template of the Kubernetes launcher (None: experiments with `launcher =
    /// "kubernetes"` get no Job from this coordinator). See `crate::k8s`.
    pub k8s_workers: Option<crate::k8s::WorkerTemplate>,
    /// The Slurm launcher's loop: `(poll, backoff)` (None: experiments with `launcher = "slurm"` get
    /// no job arrays from this coordinator, as in local mode). See `crate::slurm`.
    pub slurm: Option<(Duration, Duration)>,
}

impl ServerConfig {
    /// Defaults for a state folder, listening on `listen`.
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        ServerConfig {
            listen,
            state_dir,
            token: None,
            tls: None,
            sched: SchedConfig::default(),
            heartbeat: Duration::from_secs(5),
            max_wait: Duration::from_secs(20),
            reap_every: Duration::from_millis(250),
            http_listen: None,
            k8s_workers: None,
            slurm: None,
        }
    }
}

/// A running coordinator.
pub struct CoordinatorHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http(s)://addr`.
    pub url: String,
    /// Shared service state (scheduler, artifact store).
    pub shared: Arc<Shared>,
    /// The bound address of the metrics/health HTTP port, when `http_listen` was set.
    pub http_addr: Option<SocketAddr>,
    stop: CancellationToken,
    join: tokio::task::JoinHandle<Result<(), CoordError>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl CoordinatorHandle {
    /// The scheduler.
    pub fn scheduler(&self) -> &Arc<crate::scheduler::Scheduler> {
        &self.shared.sched
    }

    /// Stops accepting calls, ends long polls and streams, waits for in-flight calls and flushes the store.
    pub async fn shutdown(self) -> Result<(), CoordError> {
        self.stop.cancel();
        self.shared.sched.wake_all();
        let r = self
            .join
            .await
            .map_err(|e| CoordError::Runtime(format!("coordinator task: {e}")))?;
        // The reaper and the results writer stop at the token; a results write in progress may finish.
        for b in self.background {
            let abort = b.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), b)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.shared.sched.store().flush().await?;
        r
    }

    /// Stops serving at once without any flush (simulates a crash in tests; acknowledged results are
    /// already durable).
    pub fn abort(self) {
        self.stop.cancel();
        self.join.abort();
        for b in self.background {
            b.abort();
        }
    }

    /// A token cancelled when the coordinator shuts down.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Starts a coordinator; it runs until [`CoordinatorHandle::shutdown`].
pub async fn start(cfg: ServerConfig) -> Result<CoordinatorHandle, CoordError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| CoordError::io(&cfg.state_dir, e))?;
    let store = Store::open(&cfg.state_dir.join("state.db"))?;
    let artifacts = ArtifactStore::open(&cfg.state_dir.join("artifacts"))?;
    let (sched, mut finished) = Scheduler::open(store, cfg.sched.clone())?;
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        sched: sched.clone(),
        artifacts,
        results_dir: cfg.state_dir.join("experiments"),
        heartbeat: cfg.heartbeat,
        max_wait: cfg.max_wait,
        results_lock: tokio::sync::Mutex::new(()),
        stop: stop.clone(),
        authenticated: cfg.token.as_deref().is_some_and(|t| !t.is_empty()),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| CoordError::io(format!("listen {}", cfg.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordError::io("listen socket", e))?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");

    let mut background = Vec::new();
    // Lease reaper.
    {
        let sched = sched.clone();
        let every = cfg.reap_every;
        let stop = stop.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => { sched.expire(Instant::now()); }
                }
            }
        }));
    }
    // Results of finished experiments.
    {
        let shared = shared.clone();
        let stop = stop.clone();
        background.push(tokio::spawn(async move {
            loop {
                let id = tokio::select! {
                    _ = stop.cancelled() => return,
                    id = finished.recv() => match id { Some(id) => id, None => return },
                };
                match write_experiment_results(&shared, &id).await {
                    Ok(_) => {
                        tracing::info!(experiment = %id, "experiment finished; results written")
                    }
                    Err(e) => tracing::error!(experiment = %id, "writing results failed: {e}"),
                }
            }
        }));
    }

    let auth = ServerAuth::new(cfg.token.clone());
    let worker = proto::worker_server::WorkerServer::new(WorkerService(shared.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let arts = proto::artifacts_server::ArtifactsServer::new(ArtifactsService(shared.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let client = proto::client_server::ClientServer::new(ClientService(shared.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    if let Some(tls) = &cfg.tls {
        let cert = std::fs::read(&tls.cert).map_err(|e| CoordError::io(&tls.cert, e))?;
        let key = std::fs::read(&tls.key).map_err(|e| CoordError::io(&tls.key, e))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(|e| CoordError::Runtime(format!("TLS configuration: {e}")))?;
    }
    let router = builder
        .add_service(InterceptedService::new(worker, auth.clone()))
        .add_service(InterceptedService::new(arts, auth.clone()))
        .add_service(InterceptedService::new(client, auth));
    // TCP_NODELAY on accepted connections (tonic applies the builder's setting only to sockets it binds
    // itself): without it, Nagle + delayed ACKs add ~40 ms to small replies.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop2 = stop.clone();
    let grpc_serving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let serving = grpc_serving.clone();
    let join = tokio::spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(incoming, async move { stop2.cancelled().await })
            .await
            .map_err(|e| CoordError::Runtime(format!("gRPC server: {e}")));
        serving.store(false, std::sync::atomic::Ordering::SeqCst);
        r
    });
    // Kubernetes launcher: one worker Job per running experiment, pod watch (in-cluster credentials).
    if let Some(t) = cfg.k8s_workers.clone() {
        let launcher = crate::k8s::KubeLauncher::try_default(t).await?;
        let controller = crate::k8s::JobController::new(launcher, sched.clone());
        background.push(controller.spawn(crate::k8s::controller::RECONCILE_EVERY, stop.clone()));
    }
    // Slurm launcher: job arrays of pilot workers for experiments with launcher = "slurm".
    if let Some((poll, backoff)) = cfg.slurm {
        let mut s =
            crate::slurm::SlurmSettings::new(cfg.state_dir.clone(), url.clone(), cfg.token.clone());
        s.poll = poll;
        s.backoff = backoff;
        let controller = crate::slurm::SlurmController::new(sched.clone(), s);
        background.push(controller.spawn(stop.clone()));
    }
    // Metrics and health endpoints (the chart's probes and ServiceMonitor).
    let mut http_addr = None;
    if let Some(listen) = cfg.http_listen {
        let probe = Arc::new(crate::scheduler::CoordinatorProbe {
            sched: sched.clone(),
            grpc_serving,
        });
        let dashboard = crate::report::dashboard::router(sched.clone());
        let srv = crate::rpc::http::serve_with(
            listen,
            sched.metrics().clone(),
            probe,
            dashboard,
            stop.clone(),
        )
        .await?;
        http_addr = Some(srv.addr);
        background.push(tokio::spawn(async move {
            if let Ok(Err(e)) = srv.task.await {
                tracing::error!("{e}");
            }
        }));
    }
    tracing::info!(%url, state = %cfg.state_dir.display(), "coordinator listening");
    Ok(CoordinatorHandle {
        addr,
        url,
        shared,
        http_addr,
        stop,
        join,
        background,
    })
}
