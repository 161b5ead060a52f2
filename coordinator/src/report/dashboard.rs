//! The live dashboard on the coordinator's HTTP port (next to `/metrics`): `/` is one HTML page (no
//! external asset, vanilla JS polling the JSON API every 1.5 s), the JSON API behind it is documented in
//! `docs/dashboard.md`:
//!
//! - `GET /api/experiments`: every experiment with its counters;
//! - `GET /api/experiments/{id}`: one experiment: sweep points with running pooled UF1/UAR (marked
//!   partial with k/n folds), the fold x sweep-point grid (state, attempts, worker, progress of each
//!   task), prior tasks, running tasks;
//! - `GET /api/workers`: workers with devices, slots, busy slots, throughput.
//!
//! Everything is read from the scheduler's in-memory state and the SQLite store (read connections);
//! nothing here writes. Finished fold results are parsed once and cached by task key; the pooled scores
//! are recomputed with the planner's [`aggregate`] only when the number of finished folds changed.

use crate::error::CoordError;
use crate::plan::TaskKind;
use crate::results::aggregate::{aggregate, ExperimentResults};
use crate::scheduler::lease::Progress;
use crate::scheduler::{Scheduler, TaskState, TaskView};
use crate::store::now_ms;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mer_shared::fold::FoldResult;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What the dashboard handlers share.
#[derive(Clone)]
pub struct Dashboard {
    sched: Arc<Scheduler>,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    /// Parsed target results by task key.
    results: HashMap<String, FoldResult>,
    /// Worker of each stored result, by task key.
    result_worker: HashMap<String, String>,
    /// Pooled results per experiment, with the number of finished target tasks they cover.
    pooled: HashMap<String, (usize, Arc<ExperimentResults>)>,
}

/// The dashboard's routes (`/`, `/api/...`) over `sched`; merge it into the HTTP port's router.
pub fn router(sched: Arc<Scheduler>) -> Router {
    let d = Dashboard {
        sched,
        cache: Arc::new(Mutex::new(Cache::default())),
    };
    Router::new()
        .route("/", get(page))
        .route("/api/experiments", get(experiments))
        .route("/api/experiments/{id}", get(experiment))
        .route("/api/workers", get(workers))
        .with_state(d)
}

/// The dashboard HTML page.
pub const PAGE: &str = include_str!("dashboard.html");

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn err(e: CoordError) -> Response {
    let code = if matches!(e, CoordError::NotFound(_)) {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (code, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

/// An experiment in `/api/experiments`.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentSummary {
    /// Experiment id.
    pub id: String,
    /// Name from the spec.
    pub name: String,
    /// `running`, `done`, `failed`, `cancelled`.
    pub state: String,
    /// Tasks (prior + target) in the plan.
    pub tasks_total: u32,
    /// Tasks done.
    pub tasks_done: u32,
    /// Tasks held by workers now.
    pub tasks_running: u32,
    /// Tasks that gave up.
    pub tasks_failed: u32,
    /// Folds whose every task is done.
    pub folds_done: u32,
    /// Folds.
    pub folds_total: u32,
    /// Leases lost, results dropped as duplicates, failed attempts retried.
    pub lost: u64,
    /// Duplicate results dropped.
    pub duplicates: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
}

fn summary(sched: &Scheduler, id: &str) -> Option<ExperimentSummary> {
    let s = sched.status(id)?;
    Some(ExperimentSummary {
        id: s.experiment_id,
        name: s.name,
        state: s.state,
        tasks_total: s.tasks_total,
        tasks_done: s.tasks_done,
        tasks_running: s.tasks_running,
        tasks_failed: s.tasks_failed,
        folds_done: s.folds_done,
        folds_total: s.folds_total,
        lost: s.lost,
        duplicates: s.duplicates,
        retries: s.retries,
    })
}

async fn experiments(State(d): State<Dashboard>) -> Json<Vec<ExperimentSummary>> {
    Json(
        d.sched
            .experiment_ids()
            .iter()
            .filter_map(|id| summary(&d.sched, id))
            .collect(),
    )
}

/// One cell of the grid (one task).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Task key.
    pub key: String,
    /// `blocked`, `ready`, `running`, `done`, `failed`.
    pub state: &'static str,
    /// Leases handed out.
    pub attempts: u32,
    /// Failures reported.
    pub failures: u32,
    /// Leases lost.
    pub lost: u32,
    /// The worker running it (running) or that produced its result (done).
    pub worker: Option<String>,
    /// Progress while running.
    pub progress: Option<Progress>,
    /// The fold's own accuracy on its test clips (done target tasks).
    pub fold_acc: Option<f64>,
    /// Latest error (failed attempts).
    pub error: Option<String>,
}

/// Scores of one part or of all parts pooled.
#[derive(Debug, Clone, Serialize)]
pub struct PartScore {
    /// Test clips pooled so far.
    pub n: u64,
    /// Pooled UF1.
    pub uf1: f64,
    /// Pooled UAR.
    pub uar: f64,
    /// Accuracy.
    pub acc: f64,
}

/// One sweep point's running scores.
#[derive(Debug, Clone, Serialize)]
pub struct PointJson {
    /// Sweep point index.
    pub index: u32,
    /// Label.
    pub label: String,
    /// Folds finished.
    pub folds_done: usize,
    /// Folds planned.
    pub folds_total: usize,
    /// True while folds are missing: the scores cover only the finished folds.
    pub partial: bool,
    /// `"partial (k/n folds)"` or `"final"`.
    pub marker: String,
    /// Pooled over all parts (None before any fold finished).
    pub all: Option<PartScore>,
    /// Per dataset part.
    pub parts: BTreeMap<String, PartScore>,
}

/// `/api/experiments/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentDetail {
    /// Counters.
    pub experiment: ExperimentSummary,
    /// Label scheme.
    pub scheme: String,
    /// Folds (grid rows), in plan order.
    pub folds: Vec<String>,
    /// Sweep points (grid columns) with running scores.
    pub sweep_points: Vec<PointJson>,
    /// `grid[fold][point]`: the target task of each fold and sweep point.
    pub grid: Vec<Vec<Option<Cell>>>,
    /// `prior[fold]`: the fold's prior task(s) (one per base seed).
    pub prior: Vec<Vec<Cell>>,
    /// Tasks running now.
    pub running: Vec<RunningJson>,
    /// Errors of tasks that gave up.
    pub errors: Vec<String>,
    /// Why ready tasks are not being started (no worker has the devices a task needs).
    pub waiting: Vec<String>,
    /// What the launcher says (Slurm: its job arrays with their elements' states, a pause).
    pub launcher: Vec<String>,
}

/// A running task.
#[derive(Debug, Clone, Serialize)]
pub struct RunningJson {
    /// Task key.
    pub key: String,
    /// `prior` or `target`.
    pub kind: &'static str,
    /// Fold.
    pub fold: String,
    /// Sweep point label (target tasks).
    pub point: Option<String>,
    /// Worker.
    pub worker: Option<String>,
    /// Attempt number.
    pub attempt: u32,
    /// Progress.
    pub progress: Option<Progress>,
    /// The devices its lease holds (several for a task with `train.devices_per_task > 1`).
    pub devices: Vec<String>,
}

impl Dashboard {
    /// Loads the results (and their workers) of finished tasks not cached yet.
    async fn refresh(&self, views: &[TaskView]) -> Result<(), CoordError> {
        let missing: Vec<String> = {
            let c = self.cache.lock();
            views
                .iter()
                .filter(|v| v.state == TaskState::Done && !c.result_worker.contains_key(&v.key))
                .map(|v| v.key.clone())
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let rows = self.sched.store().result_rows(missing).await?;
        let mut c = self.cache.lock();
        for (k, j, w) in rows {
            if let Some(j) = j {
                match serde_json::from_str::<FoldResult>(&j) {
                    Ok(r) => {
                        c.results.insert(k.clone(), r);
                    }
                    Err(e) => {
                        tracing::warn!(task = %k, "dashboard: stored result is not a FoldResult: {e}")
                    }
                }
            }
            c.result_worker.insert(k, w);
        }
        Ok(())
    }

    async fn detail(&self, id: &str) -> Result<ExperimentDetail, CoordError> {
        let nf = || CoordError::NotFound(format!("experiment {id}"));
        let experiment = summary(&self.sched, id).ok_or_else(nf)?;
        let plan = self.sched.plan(id).ok_or_else(nf)?;
        let views = self.sched.task_views(id).ok_or_else(nf)?;
        self.refresh(&views).await?;
        let done_targets = views
            .iter()
            .filter(|v| v.kind == TaskKind::Target && v.state == TaskState::Done)
            .count();
        let c = self.cache.lock();
        let pooled = match c.pooled.get(id) {
            Some((n, p)) if *n == done_targets => p.clone(),
            _ => {
                let results: BTreeMap<String, FoldResult> = views
                    .iter()
                    .filter(|v| v.kind == TaskKind::Target && v.state == TaskState::Done)
                    .filter_map(|v| c.results.get(&v.key).map(|r| (v.key.clone(), r.clone())))
                    .collect();
                Arc::new(aggregate(&plan, &results))
            }
        };
        let cell = |v: &TaskView| Cell {
            key: v.key.clone(),
            state: v.state.public_name(),
            attempts: v.attempts,
            failures: v.failures,
            lost: v.lost,
            worker: v
                .worker
                .clone()
                .or_else(|| c.result_worker.get(&v.key).cloned()),
            progress: v.progress.clone(),
            fold_acc: c.results.get(&v.key).map(|r| r.confusion.scores().acc),
            error: v.errors.last().cloned(),
        };
        let fold_ix: HashMap<String, usize> = plan
            .folds
            .iter()
            .enumerate()
            .map(|(i, f)| (f.to_string(), i))
            .collect();
        let point_ix: HashMap<u32, usize> = plan
            .sweep_points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.index, i))
            .collect();
        let mut grid: Vec<Vec<Option<Cell>>> =
            vec![vec![None; plan.sweep_points.len()]; plan.folds.len()];
        let mut prior: Vec<Vec<Cell>> = vec![Vec::new(); plan.folds.len()];
        let mut running = Vec::new();
        let label = |p: u32| {
            plan.sweep_points
                .iter()
                .find(|s| s.index == p)
                .map(|s| s.label.clone())
        };
        for v in &views {
            let Some(&fi) = fold_ix.get(v.fold.as_str()) else {
                continue;
            };
            let cl = cell(v);
            // A task whose result is being committed has no lease any more: it is not listed as running.
            if cl.state == crate::store::ExpState::Running.key() && v.worker.is_some() {
                running.push(RunningJson {
                    key: v.key.clone(),
                    kind: v.kind.key(),
                    fold: v.fold.clone(),
                    point: v.sweep_point.and_then(label),
                    worker: cl.worker.clone(),
                    attempt: v.attempts,
                    progress: cl.progress.clone(),
                    devices: v.devices.clone(),
                });
            }
            match (v.kind, v.sweep_point.and_then(|p| point_ix.get(&p))) {
                _ if v.inner => {}
                (TaskKind::Target, Some(&pi)) => grid[fi][pi] = Some(cl),
                (TaskKind::Prior, _) => prior[fi].push(cl),
                _ => {}
            }
        }
        let ps = |n: u64, uf1: f64, uar: f64, acc: f64| PartScore { n, uf1, uar, acc };
        let sweep_points = pooled
            .sweep_points
            .iter()
            .map(|sp| PointJson {
                index: sp.index,
                label: sp.label.clone(),
                folds_done: sp.folds_done,
                folds_total: sp.folds_total,
                partial: sp.partial,
                marker: if sp.partial {
                    format!("partial ({}/{} folds)", sp.folds_done, sp.folds_total)
                } else {
                    "final".into()
                },
                all: sp.scores.as_ref().map(|s| ps(s.n, s.uf1, s.uar, s.acc)),
                parts: sp
                    .scores
                    .as_ref()
                    .map(|s| {
                        s.parts
                            .iter()
                            .map(|(k, p)| (k.clone(), ps(p.n, p.uf1, p.uar, p.acc)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let (errors, waiting, launcher) = self
            .sched
            .status(id)
            .map(|s| (s.errors, s.waiting, s.launcher))
            .unwrap_or_default();
        drop(c);
        self.cache
            .lock()
            .pooled
            .insert(id.to_string(), (done_targets, pooled));
        Ok(ExperimentDetail {
            experiment,
            scheme: plan.scheme.key().to_string(),
            folds: plan.folds.iter().map(ToString::to_string).collect(),
            sweep_points,
            grid,
            prior,
            running,
            errors,
            waiting,
            launcher,
        })
    }
}

async fn experiment(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    match d.detail(&id).await {
        Ok(x) => Json(x).into_response(),
        Err(e) => err(e),
    }
}

/// A worker in `/api/workers`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerJson {
    /// Worker id.
    pub id: String,
    /// Name it announced.
    pub name: String,
    /// Devices.
    pub devices: Vec<String>,
    /// Training slots.
    pub slots: u32,
    /// Slots running a task now.
    pub busy: u32,
    /// Sum of the training throughput its running tasks last reported (samples/s).
    pub samples_per_s: f64,
    /// Results of this worker stored (all experiments).
    pub tasks_done: u64,
    /// Finished tasks per minute since it registered.
    pub tasks_per_min: f64,
    /// Its `mer` version.
    pub version: String,
    /// Registered with this coordinator process (false: known only from the database).
    pub connected: bool,
}

async fn workers(State(d): State<Dashboard>) -> Response {
    match worker_list(&d).await {
        Ok(w) => Json(w).into_response(),
        Err(e) => err(e),
    }
}

async fn worker_list(d: &Dashboard) -> Result<Vec<WorkerJson>, CoordError> {
    let rows = d.sched.store().workers().await?;
    let done = d.sched.store().results_per_worker().await?;
    // Live leases over every experiment (a task shared by two experiments counts once).
    let mut live: HashMap<String, (String, f64)> = HashMap::new();
    for id in d.sched.experiment_ids() {
        for v in d.sched.task_views(&id).unwrap_or_default() {
            if let Some(w) = &v.worker {
                live.insert(
                    v.key.clone(),
                    (
                        w.clone(),
                        v.progress.as_ref().map(|p| p.samples_per_s).unwrap_or(0.0),
                    ),
                );
            }
        }
    }
    let known: HashMap<String, String> = d.sched.workers().into_iter().collect();
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(|w| {
            let id = w.id;
            let mine = live.values().filter(|(wid, _)| *wid == id);
            let (busy, sps) = mine.fold((0u32, 0.0), |(b, s), (_, x)| (b + 1, s + x));
            let n = done.get(&id).copied().unwrap_or(0);
            let minutes = ((now - w.registered_ms).max(1) as f64) / 60_000.0;
            WorkerJson {
                connected: known.contains_key(&id),
                id,
                name: w.name,
                devices: w.devices,
                slots: w.slots,
                busy,
                samples_per_s: sps,
                tasks_done: n,
                tasks_per_min: n as f64 / minutes,
                version: w.version,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::client::submit_spec;
    use crate::rpc::server::{start, ServerConfig};
    use crate::test_support::loopback_get::http_get;
    use mer_shared::client::{connect, ConnectOptions};
    use mer_worker::agent::sim::{write_sim_dataset, SimTrainer};
    use mer_worker::agent::{run_agent, AgentConfig};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    /// Serves `app` on a loopback port.
    pub(crate) async fn serve_loopback(app: Router) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }

    async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = http_get(addr, path).await;
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn api_shows_the_grid_filling_in_and_partial_scores() {
        let dir = tempfile::tempdir().unwrap();
        write_sim_dataset(&dir.path().join("d.safetensors"), 2, 2).unwrap();
        let spec = dir.path().join("e.toml");
        std::fs::write(&spec, "name = \"dash\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n").unwrap();
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("state"));
        cfg.heartbeat = Duration::from_millis(50);
        let coord = start(cfg).await.unwrap();
        let app = serve_loopback(router(coord.scheduler().clone())).await;
        let c = connect(&ConnectOptions::new(&coord.url, None)).unwrap();
        let sub = submit_spec(&c, &spec).await.unwrap();
        // Before any worker: every prior task ready, every target blocked, no score.
        let (code, d) = get_json(app, &format!("/api/experiments/{}", sub.experiment_id)).await;
        assert_eq!(code, 200, "{d}");
        assert_eq!(d["folds"].as_array().unwrap().len(), 6);
        assert_eq!(d["grid"][0].as_array().unwrap().len(), 2);
        assert_eq!(d["grid"][0][0]["state"], "blocked");
        assert_eq!(d["prior"][0][0]["state"], "ready");
        assert_eq!(d["sweep_points"][0]["marker"], "partial (0/6 folds)");
        assert!(d["sweep_points"][0]["all"].is_null());
        // One slow worker: observe a partial state, then the end.
        let stop = CancellationToken::new();
        let mut acfg = AgentConfig::new(
            ConnectOptions::new(&coord.url, None),
            dir.path().join("cache"),
        );
        acfg.poll_wait = Duration::from_millis(200);
        acfg.heartbeat = Some(Duration::from_millis(50));
        let sim = Arc::new(SimTrainer::new(Duration::from_millis(120), None));
        let s2 = stop.clone();
        let agent = tokio::spawn(async move { run_agent(acfg, sim, s2).await });
        let mut saw_partial = false;
        let mut saw_running = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, d) = get_json(app, &format!("/api/experiments/{}", sub.experiment_id)).await;
            let sp = &d["sweep_points"][0];
            let done = sp["folds_done"].as_u64().unwrap();
            if sp["partial"] == true && done > 0 {
                saw_partial = true;
                assert_eq!(sp["marker"], format!("partial ({done}/6 folds)"));
                assert!(sp["all"]["uf1"].as_f64().is_some());
            }
            if let Some(r) = d["running"].as_array().and_then(|r| r.first()) {
                saw_running = true;
                assert!(r["worker"].as_str().is_some(), "{r}");
            }
            if d["experiment"]["state"] == "done" {
                assert_eq!(sp["marker"], "final");
                let cell = &d["grid"][5][1];
                assert_eq!(cell["state"], "done");
                assert_eq!(cell["attempts"], 1);
                assert!(
                    cell["worker"].as_str().is_some() && cell["fold_acc"].as_f64().is_some(),
                    "{cell}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "experiment did not finish: {d}"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert!(saw_partial && saw_running);
        let (_, list) = get_json(app, "/api/experiments").await;
        assert_eq!(list[0]["name"], "dash");
        assert_eq!(list[0]["tasks_done"], 18);
        let (_, w) = get_json(app, "/api/workers").await;
        assert_eq!(w[0]["tasks_done"], 18, "{w}");
        assert_eq!(w[0]["slots"], 1);
        assert_eq!(get_json(app, "/api/experiments/nope").await.0, 404);
        let (code, page) = http_get(app, "/").await;
        assert_eq!(code, 200);
        assert!(
            page.contains("<title>mer dashboard</title>") && !page.contains("src=\"http"),
            "self-contained page"
        );
        stop.cancel();
        agent.await.unwrap().unwrap();
        coord.shutdown().await.unwrap();
    }
}
