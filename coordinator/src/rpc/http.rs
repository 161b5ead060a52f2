//! The coordinator's HTTP port (axum): `/metrics` (Prometheus text format), `/healthz` (the process
//! is up: the liveness probe) and `/readyz` (the state store is open and gRPC is serving: the
//! readiness probe). The chart's probes and ServiceMonitor point here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ClusterState, Metrics};
use crate::CoordError;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// The coordinator state behind the gauges and `/readyz`.
    pub state: Arc<dyn ClusterState>,
}

/// The router with `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>, state: Arc<dyn ClusterState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, state })
}

async fn metrics_handler(State(s): State<HttpState>) -> Response {
    match s.metrics.render(s.state.as_ref()) {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let r = s.state.readiness();
    let body = format!(
        "store_open {}\ngrpc_serving {}\n",
        r.store_open, r.grpc_serving
    );
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The HTTP server once bound: its address and the task serving it.
pub struct HttpServer {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    /// The serving task; it ends when `shutdown` is cancelled.
    pub task: tokio::task::JoinHandle<Result<(), CoordError>>,
}

/// Binds `listen` (e.g. `0.0.0.0:9464`, or `127.0.0.1:0` in tests) and serves the router until
/// `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    state: Arc<dyn ClusterState>,
    shutdown: CancellationToken,
) -> Result<HttpServer, CoordError> {
    serve_with(listen, metrics, state, Router::new(), shutdown).await
}

/// Like [`serve`], with more routes merged into the same port: the coordinator adds the live dashboard
/// (`/`, `/api/...`: `crate::report::dashboard::router`).
pub async fn serve_with(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    state: Arc<dyn ClusterState>,
    extra: Router,
    shutdown: CancellationToken,
) -> Result<HttpServer, CoordError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        CoordError::Runtime(format!("cannot bind the metrics/health port {listen}: {e}"))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordError::Runtime(format!("metrics port {listen}: {e}")))?;
    let app = router(metrics, state).merge(extra);
    tracing::info!(
        "metrics, health and dashboard on http://{addr} (/metrics, /healthz, /readyz, /)"
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| CoordError::Runtime(format!("metrics/health server on {addr}: {e}")))
    });
    Ok(HttpServer { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ClusterSnapshot, Readiness, TaskCount};
    use crate::test_support::loopback_get::http_get as get;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Toggle(AtomicBool);
    impl ClusterState for Toggle {
        fn snapshot(&self) -> Result<ClusterSnapshot, CoordError> {
            Ok(ClusterSnapshot {
                tasks: vec![TaskCount {
                    state: "ready".into(),
                    kind: "prior".into(),
                    count: 7,
                }],
                ..Default::default()
            })
        }
        fn readiness(&self) -> Readiness {
            Readiness {
                store_open: true,
                grpc_serving: self.0.load(Ordering::SeqCst),
            }
        }
    }

    #[tokio::test]
    async fn endpoints_answer_over_loopback() {
        let state = Arc::new(Toggle(AtomicBool::new(false)));
        let stop = CancellationToken::new();
        let srv = serve(
            "127.0.0.1:0".parse().unwrap(),
            Metrics::new().unwrap(),
            state.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        assert_eq!(get(srv.addr, "/healthz").await, (200, "ok\n".into()));
        let (code, body) = get(srv.addr, "/readyz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("grpc_serving false"));
        state.0.store(true, Ordering::SeqCst);
        assert_eq!(get(srv.addr, "/readyz").await.0, 200);
        let (code, body) = get(srv.addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("mer_tasks{kind=\"prior\",state=\"ready\"} 7"),
            "{body}"
        );
        assert_eq!(get(srv.addr, "/nope").await.0, 404);
        stop.cancel();
        srv.task.await.unwrap().unwrap();
    }
}
