//! The run folder as the report reads it, and the files the coordinator writes into it next to the
//! planner's `results.json` / `summary.md` / `predictions/` so that a report can show where every number
//! comes from:
//!
//! - `plan.json`: the expanded [`Plan`] (sweep points with their resolved `TrainConfig`, every task and
//!   its derived seed, the prepared files by hash);
//! - `spec.toml`: the experiment spec as submitted (when known);
//! - `folds.jsonl`: one line per finished target task, a [`FoldRecord`] (task key, sweep point, fold,
//!   worker, the full `FoldResult` with per-sample predictions and per-epoch training log);
//! - `priors.jsonl`: one line per finished prior task, a [`PriorRecord`] (task key, fold, and the per-epoch
//!   log its artifact carries: siamese loss, held-out pair accuracy, unseen-subject pair accuracy);
//! - `provenance.json`: a [`Provenance`] (code version, task-key version, prepared files with their
//!   `PrepInfo` - key-frame method and interpolator -, workers with devices and versions).
//!
//! Every file is written atomically. Only `results.json` is required to render a report; the rest
//! makes the report richer (training curves, per-subject accuracy, provenance).

use crate::error::CoordError;
use crate::plan::{Plan, TaskKind};
use crate::results::aggregate::ExperimentResults;
use crate::store::Store;
use mer_shared::fold::FoldResult;
use mer_shared::fs::write_atomic;
use mer_shared::prediction_file::parse_any;
use mer_shared::predictions::PredictionRecord;
use mer_shared::prepared::{PrepInfo, Prepared};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version tag of `provenance.json`.
pub const PROVENANCE_SCHEMA: &str = "mer-provenance/1";

/// One finished target task (a line of `folds.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRecord {
    /// The task key.
    pub task_key: String,
    /// Sweep point index.
    pub sweep_point: u32,
    /// The fold, `dataset/subject`.
    pub fold: String,
    /// The worker that produced the accepted result (`None` when unknown, e.g. a reference run).
    #[serde(default)]
    pub worker: Option<String>,
    /// The fold's result.
    pub result: FoldResult,
    /// Nested selection's inner split (lines of `inner_folds.jsonl` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<crate::plan::InnerSplit>,
}

/// One prepared file used by the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetProvenance {
    /// sha256 of the file's bytes (the task keys' `dataset`).
    pub hash: String,
    /// Where the coordinator found it.
    pub path: String,
    /// How it was prepared (key-frame method, interpolator, flow parameters, crop, mer version), when the
    /// file was readable at writing time.
    pub info: Option<PrepInfo>,
}

/// A worker that ran tasks of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerProvenance {
    /// Worker id.
    pub id: String,
    /// Name it announced (host or pod).
    pub name: String,
    /// Devices it announced.
    pub devices: Vec<String>,
    /// Training slots.
    pub slots: u32,
    /// The worker's `mer` version.
    pub version: String,
    /// Target results of this run it produced.
    pub results: usize,
}

/// `provenance.json`: what produced the run's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Always [`PROVENANCE_SCHEMA`].
    pub schema: String,
    /// The experiment id in the coordinator (when run by one).
    pub experiment_id: Option<String>,
    /// Version of the coordinator that wrote the files.
    pub mer_version: String,
    /// Task-key version (changes whenever old results become invalid).
    pub task_key_version: String,
    /// Milliseconds since the Unix epoch when written.
    pub written_ms: i64,
    /// Prepared files, by hash.
    pub datasets: Vec<DatasetProvenance>,
    /// Workers (empty for a run without a coordinator).
    pub workers: Vec<WorkerProvenance>,
    /// The methods of the spec's own as they ran, one entry per sweep point of theirs (command, files by
    /// sha256, inputs, params); absent without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_methods: Vec<mer_shared::user_method::UserMethodTask>,
}

/// One finished prior task (a line of `priors.jsonl`): its per-epoch log, read from the summary that the
/// prior artifact carries in its safetensors metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorRecord {
    /// The prior task's key.
    pub task_key: String,
    /// Its fold (the held-out subject).
    pub fold: String,
    /// Per-epoch log (stage `prior`: loss, `monitor` = held-out pair accuracy, `unseen`).
    pub epochs: Vec<mer_shared::fold::EpochLog>,
    /// Training subjects kept out of prior learning (`prior.unseen_subjects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen_subjects: Vec<String>,
}

/// The per-epoch log a prior artifact (safetensors) carries in its `summary` metadata, as a
/// [`PriorRecord`] of `task_key`/`fold`; `None` when the file or the summary cannot be read (the
/// report then lacks that fold's prior curve, nothing else).
pub fn read_prior_record(path: &Path, task_key: &str, fold: &str) -> Option<PriorRecord> {
    let data = std::fs::read(path).ok()?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&data).ok()?;
    let summary = md.metadata().as_ref()?.get("summary")?;
    #[derive(Deserialize)]
    struct Summary {
        epochs: Vec<mer_shared::fold::EpochLog>,
        #[serde(default)]
        unseen_subjects: Vec<String>,
    }
    let s: Summary = serde_json::from_str(summary).ok()?;
    Some(PriorRecord {
        task_key: task_key.to_string(),
        fold: fold.to_string(),
        epochs: s.epochs,
        unseen_subjects: s.unseen_subjects,
    })
}

/// What the coordinator knows about the run besides the results: the spec text, workers and which worker
/// produced which result.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Experiment id.
    pub experiment_id: Option<String>,
    /// The spec as submitted.
    pub spec_toml: Option<String>,
    /// Workers known to the store.
    pub workers: Vec<WorkerProvenance>,
    /// Worker id of each stored result, by task key.
    pub result_workers: BTreeMap<String, String>,
    /// Where to find prepared files by hash when the plan's path is not a file here (the artifact store).
    pub dataset_lookup: BTreeMap<String, PathBuf>,
    /// The per-epoch logs of the finished prior tasks (by task key).
    pub priors: BTreeMap<String, PriorRecord>,
}

/// Writes `plan.json`, `spec.toml` (when known), `folds.jsonl` and `provenance.json` into `dir`.
/// `results` are the finished target results by task key (other keys are ignored).
pub fn write_run_files(
    dir: &Path,
    plan: &Plan,
    results: &BTreeMap<String, FoldResult>,
    ctx: &RunContext,
) -> Result<(), CoordError> {
    let plan_json = serde_json::to_string(plan).map_err(|e| CoordError::json("plan.json", e))?;
    write_atomic(&dir.join("plan.json"), format!("{plan_json}\n").as_bytes())?;
    if let Some(spec) = &ctx.spec_toml {
        write_atomic(&dir.join("spec.toml"), spec.as_bytes())?;
    }
    let mut lines = String::new();
    let mut inner_lines = String::new();
    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for t in plan.tasks.iter().filter(|t| t.kind == TaskKind::Target) {
        let Some(r) = results.get(&t.key) else {
            continue;
        };
        let worker = ctx.result_workers.get(&t.key).cloned();
        if let Some(w) = &ctx.result_workers.get(&t.key) {
            *per_worker.entry(w.as_str()).or_insert(0) += 1;
        }
        let rec = FoldRecord {
            task_key: t.key.clone(),
            sweep_point: t.sweep_point.unwrap_or(0),
            fold: t.fold.clone(),
            worker,
            result: r.clone(),
            inner: t.payload.inner.clone(),
        };
        // Outer results in folds.jsonl (what the report reads); nested selection's inner results apart.
        let out = if t.is_inner() {
            &mut inner_lines
        } else {
            &mut lines
        };
        *out += &serde_json::to_string(&rec).map_err(|e| CoordError::json("folds.jsonl", e))?;
        out.push('\n');
    }
    write_atomic(&dir.join("folds.jsonl"), lines.as_bytes())?;
    if !ctx.priors.is_empty() {
        let mut p = String::new();
        for r in ctx.priors.values() {
            p += &serde_json::to_string(r).map_err(|e| CoordError::json("priors.jsonl", e))?;
            p.push('\n');
        }
        write_atomic(&dir.join("priors.jsonl"), p.as_bytes())?;
    }
    if plan.selection.is_some() {
        write_atomic(&dir.join("inner_folds.jsonl"), inner_lines.as_bytes())?;
    }
    let datasets = plan
        .datasets
        .iter()
        .map(|(hash, path)| {
            let file = if path.is_file() {
                Some(path.clone())
            } else {
                ctx.dataset_lookup
                    .get(hash)
                    .filter(|p| p.is_file())
                    .cloned()
            };
            let info = file.and_then(|f| match Prepared::read_meta(&f) {
                Ok(m) => Some(m.info),
                Err(e) => {
                    tracing::warn!(
                        "provenance: cannot read the metadata of {}: {e}",
                        f.display()
                    );
                    None
                }
            });
            DatasetProvenance {
                hash: hash.clone(),
                path: path.display().to_string(),
                info,
            }
        })
        .collect();
    let workers = ctx
        .workers
        .iter()
        .filter_map(|w| {
            let n = per_worker.get(w.id.as_str()).copied().unwrap_or(0);
            (n > 0).then(|| WorkerProvenance {
                results: n,
                ..w.clone()
            })
        })
        .collect();
    let prov = Provenance {
        schema: PROVENANCE_SCHEMA.into(),
        experiment_id: ctx.experiment_id.clone(),
        mer_version: env!("CARGO_PKG_VERSION").into(),
        task_key_version: crate::plan::TASK_KEY_VERSION.into(),
        written_ms: crate::store::now_ms(),
        datasets,
        workers,
        user_methods: plan
            .sweep_points
            .iter()
            .filter_map(|sp| match &sp.baseline {
                Some(mer_shared::method::BaselineSettings::User(u)) => Some(u.clone()),
                _ => None,
            })
            .collect(),
    };
    let json =
        serde_json::to_string_pretty(&prov).map_err(|e| CoordError::json("provenance.json", e))?;
    write_atomic(&dir.join("provenance.json"), format!("{json}\n").as_bytes())?;
    Ok(())
}

/// Reads the spec text, the workers and the worker of each result of experiment `id` from the store.
pub async fn run_context(store: &Store, id: &str) -> Result<RunContext, CoordError> {
    let spec_toml = store.experiment_spec(id).await?.filter(|s| !s.is_empty());
    let mut workers: Vec<WorkerProvenance> = store
        .workers()
        .await?
        .into_iter()
        .map(|w| WorkerProvenance {
            id: w.id,
            name: w.name,
            devices: w.devices,
            slots: w.slots,
            version: w.version,
            results: 0,
        })
        .collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let result_workers = store.target_result_workers().await?;
    Ok(RunContext {
        experiment_id: Some(id.to_string()),
        spec_toml,
        workers,
        result_workers,
        dataset_lookup: BTreeMap::new(),
        priors: BTreeMap::new(),
    })
}

/// A run folder loaded for reporting.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run folder.
    pub dir: PathBuf,
    /// `results.json`.
    pub results: ExperimentResults,
    /// Per sweep point (by index): the pooled predictions read back from `predictions/<label>.megc.txt`
    /// (or `.csv`), the files `mer score` reads.
    pub predictions: BTreeMap<u32, Vec<PredictionRecord>>,
    /// The prediction files by sweep point index (relative to the run folder).
    pub prediction_files: BTreeMap<u32, Vec<String>>,
    /// `plan.json`, when present.
    pub plan: Option<Plan>,
    /// `spec.toml`, when present.
    pub spec_toml: Option<String>,
    /// `folds.jsonl`, when present.
    pub folds: Vec<FoldRecord>,
    /// `priors.jsonl`, when present.
    pub priors: Vec<PriorRecord>,
    /// `provenance.json`, when present.
    pub provenance: Option<Provenance>,
}

fn read_opt(path: &Path) -> Result<Option<String>, CoordError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CoordError::io(path, e)),
    }
}

/// Loads a run folder: `results.json` (required) and whatever else is there.
pub fn load_run(dir: &Path) -> Result<RunData, CoordError> {
    let rpath = dir.join("results.json");
    let text = read_opt(&rpath)?.ok_or_else(|| {
        CoordError::invalid(
            format!("run folder {}", dir.display()),
            "no results.json (is this the folder `mer run` wrote?)",
        )
    })?;
    let results: ExperimentResults = serde_json::from_str(&text)
        .map_err(|e| CoordError::json(rpath.display().to_string(), e))?;
    if results.schema != crate::results::aggregate::RESULTS_SCHEMA {
        return Err(CoordError::invalid(
            rpath.display().to_string(),
            format!(
                "schema '{}', this mer reads '{}'",
                results.schema,
                crate::results::aggregate::RESULTS_SCHEMA
            ),
        ));
    }
    let mut predictions = BTreeMap::new();
    let mut prediction_files = BTreeMap::new();
    for sp in &results.sweep_points {
        let stem = crate::plan::safe_label(&sp.label);
        let mut files = Vec::new();
        let mut recs = None;
        for ext in ["megc.txt", "csv"] {
            let rel = format!("predictions/{stem}.{ext}");
            let p = dir.join(&rel);
            if let Some(t) = read_opt(&p)? {
                if recs.is_none() {
                    recs = Some(parse_any(&p.display().to_string(), &t, results.scheme)?);
                }
                files.push(rel);
            }
        }
        if sp.folds_done > 0 && recs.is_none() {
            return Err(CoordError::invalid(
                format!("run folder {}", dir.display()),
                format!("sweep point '{}' has {} finished folds but no predictions/{stem}.megc.txt or .csv", sp.label, sp.folds_done),
            ));
        }
        if let Some(r) = recs {
            predictions.insert(sp.index, r);
        }
        prediction_files.insert(sp.index, files);
    }
    let plan = match read_opt(&dir.join("plan.json"))? {
        Some(t) => Some(
            serde_json::from_str(&t)
                .map_err(|e| CoordError::json(dir.join("plan.json").display().to_string(), e))?,
        ),
        None => None,
    };
    let spec_toml = read_opt(&dir.join("spec.toml"))?;
    let mut folds = Vec::new();
    let fpath = dir.join("folds.jsonl");
    if let Some(t) = read_opt(&fpath)? {
        for (i, line) in t.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let rec: FoldRecord = serde_json::from_str(line)
                .map_err(|e| CoordError::json(format!("{}:{}", fpath.display(), i + 1), e))?;
            folds.push(rec);
        }
    }
    let mut priors = Vec::new();
    let ppath = dir.join("priors.jsonl");
    if let Some(t) = read_opt(&ppath)? {
        for (i, line) in t.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let rec: PriorRecord = serde_json::from_str(line)
                .map_err(|e| CoordError::json(format!("{}:{}", ppath.display(), i + 1), e))?;
            priors.push(rec);
        }
    }
    let provenance =
        match read_opt(&dir.join("provenance.json"))? {
            Some(t) => Some(serde_json::from_str(&t).map_err(|e| {
                CoordError::json(dir.join("provenance.json").display().to_string(), e)
            })?),
            None => None,
        };
    Ok(RunData {
        dir: dir.to_path_buf(),
        results,
        predictions,
        prediction_files,
        plan,
        spec_toml,
        folds,
        priors,
        provenance,
    })
}
