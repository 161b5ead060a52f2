//! The one path that writes an experiment's run folder: from the scheduler's stored results
//! ([`StoredRun`], read with [`StoredRun::read`]), the artifact store and the run folder, [`write_run`]
//! pools the folds ([`aggregate`]), records the final scores in the metrics, and writes `results.json`,
//! `summary.md`, the prediction files and the report bundle (plan, spec, fold results, priors,
//! provenance). The coordinator calls it when an experiment ends and on every `Client.results` call.

use crate::error::CoordError;
use crate::metrics::{Metrics, PointScore};
use crate::plan::{Plan, TaskKind};
use crate::results::aggregate::{aggregate, ExperimentResults};
use crate::results::bundle::{read_prior_record, run_context, write_run_files, RunContext};
use crate::results::sections::summary_markdown;
use crate::store::Store;
use mer_shared::artifact_store::ArtifactStore;
use mer_shared::fold::FoldResult;
use mer_shared::fs::write_atomic;
use mer_shared::megc_log;
use mer_shared::predictions::to_csv;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What the scheduler's store holds of one experiment that its run folder is written from.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The experiment id.
    pub id: String,
    /// Its plan.
    pub plan: Arc<Plan>,
    /// The finished target results, by task key.
    pub folds: BTreeMap<String, FoldResult>,
    /// The spec, the workers and the worker of each result.
    pub context: RunContext,
    /// The artifact hash of each finished prior task's checkpoint, by task key.
    pub prior_checkpoints: BTreeMap<String, String>,
}

impl StoredRun {
    /// Reads the finished results of `plan` (experiment `id`) and the run's context from `store`.
    pub async fn read(store: &Store, id: &str, plan: Arc<Plan>) -> Result<Self, CoordError> {
        let keys: Vec<String> = plan
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target)
            .map(|t| t.key.clone())
            .collect();
        let mut folds = BTreeMap::new();
        for (k, j) in store.results_of(keys).await? {
            let r: FoldResult = serde_json::from_str(&j)
                .map_err(|e| CoordError::json(format!("stored result of task {k}"), e))?;
            folds.insert(k, r);
        }
        Ok(StoredRun {
            id: id.to_string(),
            context: run_context(store, id).await?,
            prior_checkpoints: store.prior_checkpoints().await?,
            plan,
            folds,
        })
    }
}

/// A run folder as written: the pooled results and every file of the folder (relative path -> text).
#[derive(Debug, Clone)]
pub struct WrittenRun {
    /// The pooled results (`results.json`, with the per-sample predictions).
    pub results: ExperimentResults,
    /// Every file of the folder but hidden ones, by path relative to it.
    pub files: BTreeMap<String, String>,
}

impl WrittenRun {
    /// True when every sweep point has all its folds.
    pub fn complete(&self) -> bool {
        !self.results.partial
    }
}

/// Pools `run`, records its final scores in `metrics`, and writes its run folder `dir`: `results.json`,
/// `summary.md`, the prediction files and the report bundle, prepared files and prior checkpoints found
/// in `artifacts`. Returns what the folder then holds.
pub fn write_run(
    run: StoredRun,
    artifacts: &ArtifactStore,
    dir: &Path,
    metrics: &Metrics,
) -> Result<WrittenRun, CoordError> {
    let res = aggregate(&run.plan, &run.folds);
    metrics.set_final_scores(&run.id, final_point_scores(&res));
    write_results(dir, &res)?;
    let mut ctx = run.context;
    ctx.dataset_lookup = run
        .plan
        .datasets
        .keys()
        .map(|h| (h.clone(), artifacts.path_of(h)))
        .collect();
    for (key, hash) in run.prior_checkpoints {
        let Some(t) = run.plan.tasks.iter().find(|t| t.key == key) else {
            continue;
        };
        if let Some(r) = read_prior_record(&artifacts.path_of(&hash), &key, &t.fold) {
            ctx.priors.insert(key, r);
        }
    }
    write_run_files(dir, &run.plan, &run.folds, &ctx)?;
    let mut files = BTreeMap::new();
    collect_files(dir, dir, &mut files)?;
    Ok(WrittenRun {
        results: res,
        files,
    })
}

/// Final per-point scores of an aggregated experiment: one `all` row and one row per dataset part, for
/// each sweep point whose folds are all done (the `mer_final_*` gauges).
fn final_point_scores(res: &ExperimentResults) -> Vec<PointScore> {
    let mut out = Vec::new();
    for p in &res.sweep_points {
        let Some(s) = p.scores.as_ref() else { continue };
        if p.partial || p.folds_done < p.folds_total {
            continue;
        }
        out.push(PointScore {
            point: p.index,
            label: p.label.clone(),
            part: "all".into(),
            uf1: s.uf1,
            uar: s.uar,
        });
        for (part, ps) in &s.parts {
            out.push(PointScore {
                point: p.index,
                label: p.label.clone(),
                part: part.clone(),
                uf1: ps.uf1,
                uar: ps.uar,
            });
        }
    }
    out
}

/// Writes `results.json`, `summary.md`, and `predictions/<label>.megc.txt` + `.csv` per sweep point with
/// at least one finished fold into `dir`, each atomically.
pub fn write_results(dir: &Path, res: &ExperimentResults) -> Result<(), CoordError> {
    for sp in &res.sweep_points {
        if sp.predictions.is_empty() {
            continue;
        }
        let stem = crate::plan::safe_label(&sp.label);
        let pdir = dir.join("predictions");
        write_atomic(
            &pdir.join(format!("{stem}.megc.txt")),
            megc_log::write(&sp.predictions).as_bytes(),
        )?;
        write_atomic(
            &pdir.join(format!("{stem}.csv")),
            to_csv(&sp.predictions).as_bytes(),
        )?;
    }
    let mut lean = res.clone();
    for sp in &mut lean.sweep_points {
        sp.predictions.clear();
    }
    let json =
        serde_json::to_string_pretty(&lean).map_err(|e| CoordError::json("results.json", e))?;
    write_atomic(&dir.join("results.json"), format!("{json}\n").as_bytes())?;
    write_atomic(&dir.join("summary.md"), summary_markdown(res).as_bytes())?;
    Ok(())
}

/// Every file under `dir` but hidden ones (names starting with `.`), by path relative to `root`.
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), CoordError> {
    for entry in std::fs::read_dir(dir).map_err(|e| CoordError::io(dir, e))? {
        let entry = entry.map_err(|e| CoordError::io(dir, e))?;
        let p = entry.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .to_string();
            out.insert(
                rel,
                std::fs::read_to_string(&p).map_err(|e| CoordError::io(&p, e))?,
            );
        }
    }
    Ok(())
}
