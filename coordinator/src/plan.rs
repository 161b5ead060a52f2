//! Expansion of a spec into a task graph: one prior-learning task per LOSO fold (and base seed), then one
//! target task per (fold, sweep point) that depends on it.
//!
//! A task's key is the sha256 of a canonical JSON of everything that determines its result and nothing
//! else (not the experiment's name, not the device or thread count): two experiments that share a fold and
//! a sweep point share the task, so a finished result is reused across experiments and restarts.

use crate::error::CoordError;
use crate::spec::{ExperimentSpec, LossKind, PathSeg};
use mer_shared::digest::{canonical_json, sha256_file, sha256_json};
use mer_shared::loso::{loso_folds, union_folds};
use mer_shared::method::{BaselineSettings, Method};
use mer_shared::prepared::Prepared;
pub use mer_shared::task::{DatasetSummary, TaskKind, TaskPayload, TASK_KEY_VERSION};
use mer_shared::train_config::{Alpha, LossConfig, TargetConfig, TrainConfig};
use mer_shared::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One node of the task graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    /// sha256 hex of everything that determines the result (see the module docs).
    pub key: String,
    /// Prior or target.
    pub kind: TaskKind,
    /// The fold, `dataset/subject`.
    pub fold: String,
    /// Sweep point index (target tasks), `None` for prior tasks (shared by several sweep points).
    pub sweep_point: Option<u32>,
    /// Keys of the tasks that must finish first.
    pub deps: Vec<String>,
    /// What the worker runs.
    pub payload: TaskPayload,
}

/// One point of the sweep's cartesian product (after collapsing duplicates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// 0-based index in the plan.
    pub index: u32,
    /// Human-readable, file-name-safe label of the swept values, e.g. `alpha=2,frozen=1` (`default` when
    /// nothing is swept).
    pub label: String,
    /// The swept axes' values (`method`, `loss`, `alpha`, `prior`, `frozen_layers`, `keyframes`, `seed`);
    /// an axis irrelevant for this point (alpha under cross-entropy, any MERSiamC3D axis for a baseline)
    /// is left out.
    pub values: BTreeMap<String, Value>,
    /// The recognition method.
    #[serde(default)]
    pub method: Method,
    /// A baseline's resolved settings (`None` for MERSiamC3D, whose settings are `train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSettings>,
    /// Key-frame tag of the point's dataset.
    pub keyframes: String,
    /// sha256 of the point's prepared file.
    pub dataset_hash: String,
    /// The resolved training settings before the per-fold seed derivation (`seed` = the base seed).
    pub train: TrainConfig,
}

/// The expanded experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Experiment name.
    pub experiment: String,
    /// Hash of the spec ([`ExperimentSpec::spec_hash`]).
    pub spec_hash: String,
    /// Label scheme.
    pub scheme: LabelScheme,
    /// Parts included (sorted).
    pub parts: Vec<Dataset>,
    /// Sweep points.
    pub sweep_points: Vec<SweepPoint>,
    /// Every task: prior tasks first, then target tasks by sweep point and fold.
    pub tasks: Vec<TaskDef>,
    /// LOSO folds (`dataset/subject`), in dataset then subject order (union over the datasets used).
    pub folds: Vec<String>,
    /// Prepared files by hash (what workers download).
    pub datasets: BTreeMap<String, PathBuf>,
    /// Combinations of the cartesian product that were dropped, with the reason.
    pub skipped: Vec<String>,
}

impl Plan {
    /// Target tasks of one sweep point.
    pub fn targets_of(&self, point: u32) -> impl Iterator<Item = &TaskDef> {
        self.tasks
            .iter()
            .filter(move |t| t.kind == TaskKind::Target && t.sweep_point == Some(point))
    }

    /// A task by key.
    pub fn task(&self, key: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// A human-readable overview (for a dry run): folds, sweep points, task counts, skipped combinations.
    pub fn describe(&self) -> String {
        let priors = self
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Prior)
            .count();
        let targets = self.tasks.len() - priors;
        let parts: Vec<&str> = self.parts.iter().map(|p| p.key()).collect();
        let mut out = format!(
            "experiment {}: scheme {}, parts {}, {} LOSO folds\n{} sweep point(s), {} tasks ({} prior, {} target)\n",
            self.experiment,
            self.scheme,
            parts.join(","),
            self.folds.len(),
            self.sweep_points.len(),
            self.tasks.len(),
            priors,
            targets
        );
        for sp in &self.sweep_points {
            let n = self.targets_of(sp.index).count();
            out += &format!(
                "  [{}] {} ({} target tasks, key-frames {})\n",
                sp.index, sp.label, n, sp.keyframes
            );
        }
        for s in &self.skipped {
            out += &format!("  skipped: {s}\n");
        }
        out
    }
}

/// Hashes a prepared file (streamed) and reads its metadata from the safetensors header only.
pub fn dataset_summary(path: &Path) -> Result<DatasetSummary, CoordError> {
    let meta = Prepared::read_meta(path)?;
    let hash = sha256_file(path)?;
    Ok(DatasetSummary {
        hash,
        path: path.to_path_buf(),
        info: meta.info,
        samples: meta.samples,
    })
}

/// Reads the summaries of every prepared file a spec names, keyed by key-frame tag (the file's own
/// `PrepInfo.keyframes` for a single `dataset`). A missing file is a [`CoordError::Dataset`] error.
pub fn load_datasets(
    spec: &ExperimentSpec,
) -> Result<BTreeMap<String, DatasetSummary>, CoordError> {
    summaries(spec, dataset_summary)
}

/// What can be checked of a spec before anything is started, cheaply: every prepared file it names
/// exists and has a valid header (read, not hashed), and the spec expands against them (parts, scheme,
/// sweep). [`load_datasets`] + [`expand_multi`] check the same and more (they hash the files).
pub fn preflight(spec: &ExperimentSpec) -> Result<(), CoordError> {
    let ds = summaries(spec, |path| {
        let meta = Prepared::read_meta(path)?;
        Ok(DatasetSummary {
            hash: String::new(),
            path: path.to_path_buf(),
            info: meta.info,
            samples: meta.samples,
        })
    })?;
    expand_multi(spec, &ds).map(|_| ())
}

/// `summarize`s every prepared file the spec names, keyed by key-frame tag (the file's own
/// `PrepInfo.keyframes` for a single `dataset`); a missing file is a [`CoordError::Dataset`] error.
fn summaries(
    spec: &ExperimentSpec,
    summarize: impl Fn(&Path) -> Result<DatasetSummary, CoordError>,
) -> Result<BTreeMap<String, DatasetSummary>, CoordError> {
    let mut out = BTreeMap::new();
    for (tag, path) in spec.dataset_files() {
        if !path.is_file() {
            return Err(CoordError::Dataset {
                path,
                message: "no such file (prepare it with `mer prep`)".into(),
            });
        }
        let s = summarize(&path)?;
        out.insert(tag.unwrap_or_else(|| s.info.keyframes.clone()), s);
    }
    Ok(out)
}

/// Loads the spec's datasets and expands it.
pub fn plan_spec(spec: &ExperimentSpec) -> Result<Plan, CoordError> {
    let ds = load_datasets(spec)?;
    expand_multi(spec, &ds)
}

/// Expands a spec with a single prepared dataset (`dataset = ...`, or `[datasets]` with one entry).
pub fn expand(spec: &ExperimentSpec, dataset: &DatasetSummary) -> Result<Plan, CoordError> {
    let tag = match spec.datasets.keys().next() {
        Some(t) if spec.dataset.is_none() => {
            if spec.datasets.len() > 1 {
                return Err(spec.error(
                    &[PathSeg::Key("datasets")],
                    format!("the spec names {} prepared files; expand it with all of them (expand_multi)", spec.datasets.len()),
                ));
            }
            t.clone()
        }
        _ => dataset.info.keyframes.clone(),
    };
    expand_multi(spec, &BTreeMap::from([(tag, dataset.clone())]))
}

/// Derives a task's seed from the base seed, the fold and the stage (deterministic, documented): the
/// first 8 bytes (little-endian) of sha256(`mer-seed/1|{base}|{fold}|{stage}`). Sweep points of one fold
/// share it (common random numbers: they differ only in the swept setting).
pub fn derive_seed(base: u64, fold: &str, stage: TaskKind) -> u64 {
    let d = Sha256::digest(format!("mer-seed/1|{base}|{fold}|{}", stage.key()).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Plain data structs (no maps with non-string keys) always serialise.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The key of a prior task: what prior learning depends on.
pub fn prior_key(payload: &TaskPayload) -> String {
    let t = &payload.train;
    let v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "prior",
        "prior_scope": "per_fold",
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "model": to_value(&t.model),
        "prior": to_value(&t.prior),
        "augment": to_value(&t.augment),
        "fast_path": t.fast_path,
        "seed": t.seed,
    });
    sha256_json(&v)
}

/// The key of a target task: the target stage's settings, the prior task's key (which covers prior
/// learning) or `null` for from-scratch training. A baseline's task is keyed by its method's settings
/// instead ([`baseline_key`]).
pub fn target_key(payload: &TaskPayload) -> String {
    if let Some(b) = &payload.baseline {
        return baseline_key(payload, b);
    }
    let t = &payload.train;
    let v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "target",
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "model": to_value(&t.model),
        "prior_enabled": t.prior.enabled,
        "prior_key": payload.prior_key,
        "target": to_value(&t.target),
        "augment": to_value(&t.augment),
        "fast_path": t.fast_path,
        "seed": t.seed,
    });
    sha256_json(&v)
}

/// The key of a baseline method's task: its settings, the data, the fold and the seed (MERSiamC3D's
/// `[train]` settings, the device and the thread count do not matter to it).
fn baseline_key(payload: &TaskPayload, settings: &BaselineSettings) -> String {
    let v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "target",
        "method": settings.method(),
        "settings": to_value(settings),
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "seed": payload.train.seed,
    });
    sha256_json(&v)
}

/// One combination of the axes before resolution.
struct Combo {
    method: Method,
    loss: LossKind,
    alpha: Option<f64>,
    prior: bool,
    frozen: usize,
    tag: String,
    seed: u64,
}

/// Expands a spec against the summaries of its prepared files (keyed by key-frame tag, as
/// [`load_datasets`] returns them).
pub fn expand_multi(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
) -> Result<Plan, CoordError> {
    use PathSeg::{Index, Key};
    // Key-frame tags: the sweep's, or every dataset given.
    let tags: Vec<String> = match &spec.sweep.keyframes {
        Some(t) => t.clone(),
        None => datasets.keys().cloned().collect(),
    };
    if tags.is_empty() {
        return Err(CoordError::Plan("no prepared dataset given".into()));
    }
    for (i, tag) in tags.iter().enumerate() {
        let Some(ds) = datasets.get(tag) else {
            let known: Vec<&str> = datasets.keys().map(String::as_str).collect();
            return Err(spec.error(
                &[Key("sweep"), Key("keyframes"), Index(i)],
                format!("key-frame tag '{tag}' does not match the prepared file(s): their key-frame method is {}", known.join(", ")),
            ));
        };
        let method = &ds.info.keyframes;
        if tag != method && !tag.starts_with(&format!("{method}-")) {
            let path: Vec<PathSeg<'_>> = if spec.sweep.keyframes.is_some() {
                vec![Key("sweep"), Key("keyframes"), Index(i)]
            } else {
                vec![Key("datasets"), Key(tag)]
            };
            return Err(spec.error(
                &path,
                format!("key-frame tag '{tag}' does not match {}: it was prepared with key-frames '{method}'", ds.path.display()),
            ));
        }
        let m = &spec.train.model;
        let methods = spec.method_axis();
        for (j, method) in methods.iter().enumerate() {
            if let Some(g) = method.inputs().iter().find(|g| !ds.info.has_group(**g)) {
                let path: Vec<PathSeg<'_>> = if spec.sweep.method.is_some() {
                    vec![Key("sweep"), Key("method"), Index(j)]
                } else {
                    vec![Key("method")]
                };
                return Err(spec.error(
                    &path,
                    format!(
                        "method '{method}' needs the '{}' tensor group, which {} lacks: prepare it again with `mer prep ... {}`",
                        g.key(),
                        ds.path.display(),
                        g.prep_flag()
                    ),
                ));
            }
        }
        let runs_engine = methods.contains(&Method::Mersiamc3d);
        if runs_engine
            && (m.frames != ds.info.frames as i64 || m.channels != ds.info.channels.len() as i64)
        {
            return Err(spec.error(
                &[Key("train"), Key("model")],
                format!(
                    "model expects {} frames x {} channels, {} holds {} x {} ({})",
                    m.frames,
                    m.channels,
                    ds.path.display(),
                    ds.info.frames,
                    ds.info.channels.len(),
                    ds.info.channels.join(",")
                ),
            ));
        }
    }
    // Parts: the spec's (each present and labelled), or every part with a labelled sample.
    let labelled = |ds: &DatasetSummary, part: Dataset| {
        ds.samples
            .iter()
            .filter(|s| s.dataset == part && s.labels.contains_key(spec.scheme.key()))
            .count()
    };
    let present = |ds: &DatasetSummary, part: Dataset| ds.samples.iter().any(|s| s.dataset == part);
    let mut parts: Vec<Dataset> = match &spec.parts {
        Some(p) => {
            for (i, part) in p.iter().enumerate() {
                for tag in &tags {
                    let ds = &datasets[tag];
                    if !present(ds, *part) {
                        return Err(spec.error(
                            &[Key("parts"), Index(i)],
                            format!(
                                "part '{part}' is not in the prepared file {}",
                                ds.path.display()
                            ),
                        ));
                    }
                    if labelled(ds, *part) == 0 {
                        return Err(spec.error(
                            &[Key("parts"), Index(i)],
                            format!(
                                "part '{part}' of {} has no sample labelled under scheme {}",
                                ds.path.display(),
                                spec.scheme
                            ),
                        ));
                    }
                }
            }
            p.clone()
        }
        None => Dataset::ALL
            .into_iter()
            .filter(|d| tags.iter().any(|t| labelled(&datasets[t], *d) > 0))
            .collect(),
    };
    parts.sort();
    if parts.is_empty() {
        let files: Vec<String> = tags
            .iter()
            .map(|t| datasets[t].path.display().to_string())
            .collect();
        return Err(spec.error(
            &[Key("scheme")],
            format!(
                "no sample of {} is labelled under scheme {}: nothing to train on",
                files.join(", "),
                spec.scheme
            ),
        ));
    }
    let folds_of: BTreeMap<&str, Vec<String>> = tags
        .iter()
        .map(|t| {
            (
                t.as_str(),
                loso_folds(&datasets[t].samples, spec.scheme, &parts),
            )
        })
        .collect();
    for (t, f) in &folds_of {
        if f.len() < 2 {
            return Err(CoordError::Plan(format!(
                "{} has {} subject(s) labelled under {} in parts {:?}: LOSO needs at least 2",
                datasets[*t].path.display(),
                f.len(),
                spec.scheme,
                parts.iter().map(|p| p.key()).collect::<Vec<_>>()
            )));
        }
    }

    // The cartesian product, in axis order loss, alpha, prior, frozen, keyframes, seed.
    let alphas: Vec<Option<f64>> = match &spec.sweep.alpha {
        Some(a) => a.iter().map(|x| Some(*x)).collect(),
        None => vec![None],
    };
    let priors = spec.priors();
    let mut combos = Vec::new();
    let mut skipped = Vec::new();
    // A baseline has none of MERSiamC3D's axes: one combination per key-frame tag and seed.
    for method in spec
        .method_axis()
        .into_iter()
        .filter(|m| *m != Method::Mersiamc3d)
    {
        for tag in &tags {
            for seed in spec.seeds() {
                combos.push(Combo {
                    method,
                    loss: LossKind::CrossEntropy,
                    alpha: None,
                    prior: false,
                    frozen: 0,
                    tag: tag.clone(),
                    seed,
                });
            }
        }
    }
    let engine_axes = if spec.method_axis().contains(&Method::Mersiamc3d) {
        spec.losses()
    } else {
        vec![]
    };
    for loss in engine_axes {
        for alpha in &alphas {
            for prior in &priors {
                for frozen in spec.frozen() {
                    for tag in &tags {
                        for seed in spec.seeds() {
                            if !prior && frozen > 0 {
                                skipped.push(format!(
                                    "prior=false with frozen_layers={frozen}: frozen layers need prior-learned weights"
                                ));
                                continue;
                            }
                            combos.push(Combo {
                                method: Method::Mersiamc3d,
                                loss,
                                alpha: *alpha,
                                prior: *prior,
                                frozen,
                                tag: tag.clone(),
                                seed,
                            });
                        }
                    }
                }
            }
        }
    }
    skipped.sort();
    skipped.dedup();
    // MERSiamC3D's points first (their indices are what they were before methods existed), then the
    // baselines in the order of the method axis.
    let order = spec.method_axis();
    combos.sort_by_key(|c| {
        (
            c.method != Method::Mersiamc3d,
            order.iter().position(|m| *m == c.method),
        )
    });

    let mut sweep_points: Vec<SweepPoint> = Vec::new();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for c in combos {
        let ds = &datasets[&c.tag];
        let baseline = spec.methods.settings(c.method);
        if let Some(b) = &baseline {
            // A baseline uses only the device, thread count and seed of `[train]`.
            let train = TrainConfig {
                device: spec.train.device.clone(),
                threads: spec.train.threads,
                fast_path: spec.train.fast_path,
                seed: c.seed,
                ..TrainConfig::default()
            };
            let identity = canonical_json(
                &json!({ "dataset": ds.hash, "baseline": to_value(b), "seed": c.seed }),
            );
            if seen.contains_key(&identity) {
                continue;
            }
            let mut values = BTreeMap::new();
            values.insert("method".to_string(), json!(c.method.key()));
            let mut label = vec![format!("method={}", c.method.key())];
            if spec.sweep.keyframes.is_some() || datasets.len() > 1 {
                values.insert("keyframes".to_string(), json!(c.tag));
                label.push(format!("keyframes={}", c.tag));
            }
            if spec.sweep.seeds.is_some() {
                values.insert("seed".to_string(), json!(c.seed));
                label.push(format!("seed={}", c.seed));
            }
            let index = sweep_points.len() as u32;
            seen.insert(identity, index);
            sweep_points.push(SweepPoint {
                index,
                label: safe_label(&label.join(",")),
                values,
                method: c.method,
                baseline,
                keyframes: c.tag.clone(),
                dataset_hash: ds.hash.clone(),
                train,
            });
            continue;
        }
        let mut train = spec.train.clone();
        train.prior.enabled = c.prior;
        train.target.frozen_layers = c.frozen;
        train.seed = c.seed;
        train.target.loss = match c.loss {
            LossKind::CrossEntropy => LossConfig::CrossEntropy,
            LossKind::Focal => {
                let (gamma, alpha) = match &spec.train.target.loss {
                    LossConfig::Focal { gamma, alpha } => (*gamma, alpha.clone()),
                    LossConfig::CrossEntropy => (2.0, Alpha::Scalar(1.0)),
                };
                LossConfig::Focal {
                    gamma,
                    alpha: c.alpha.map(Alpha::Scalar).unwrap_or(alpha),
                }
            }
        };
        if !c.prior {
            // Prior settings do not matter without prior learning: normalise them so equal points collapse.
            train.prior = mer_shared::train_config::PriorConfig {
                enabled: false,
                ..Default::default()
            };
        }
        let identity = canonical_json(&json!({ "dataset": ds.hash, "train": to_value(&train) }));
        if seen.contains_key(&identity) {
            continue;
        }
        let mut values = BTreeMap::new();
        let mut label = Vec::new();
        let sw = &spec.sweep;
        if sw.method.is_some() {
            values.insert("method".to_string(), json!(Method::Mersiamc3d.key()));
            label.push(format!("method={}", Method::Mersiamc3d.key()));
        }
        if sw.loss.is_some() {
            values.insert("loss".to_string(), json!(c.loss.key()));
            label.push(format!("loss={}", c.loss.key()));
        }
        if let (Some(a), LossKind::Focal) = (c.alpha, c.loss) {
            values.insert("alpha".to_string(), json!(a));
            label.push(format!("alpha={a}"));
        }
        if sw.prior.is_some() {
            values.insert("prior".to_string(), json!(c.prior));
            label.push(format!("prior={}", c.prior));
        }
        if sw.frozen_layers.is_some() && (c.prior || sw.prior.is_none()) {
            values.insert("frozen_layers".to_string(), json!(c.frozen));
            label.push(format!("frozen={}", c.frozen));
        }
        if sw.keyframes.is_some() || datasets.len() > 1 {
            values.insert("keyframes".to_string(), json!(c.tag));
            label.push(format!("keyframes={}", c.tag));
        }
        if sw.seeds.is_some() {
            values.insert("seed".to_string(), json!(c.seed));
            label.push(format!("seed={}", c.seed));
        }
        let label = if label.is_empty() {
            "default".to_string()
        } else {
            safe_label(&label.join(","))
        };
        let index = sweep_points.len() as u32;
        seen.insert(identity, index);
        sweep_points.push(SweepPoint {
            index,
            label,
            values,
            method: Method::Mersiamc3d,
            baseline: None,
            keyframes: c.tag.clone(),
            dataset_hash: ds.hash.clone(),
            train,
        });
    }

    // Tasks: prior tasks (deduplicated by key), then target tasks.
    let mut priors_by_key: BTreeMap<String, TaskDef> = BTreeMap::new();
    let mut prior_order: Vec<String> = Vec::new();
    let mut targets = Vec::new();
    for sp in &sweep_points {
        for fold in &folds_of[sp.keyframes.as_str()] {
            let prior_key = if sp.method.has_prior() && sp.train.prior.enabled {
                let mut train = sp.train.clone();
                train.target = TargetConfig::default();
                train.seed = derive_seed(sp.train.seed, fold, TaskKind::Prior);
                let payload = TaskPayload {
                    dataset_hash: sp.dataset_hash.clone(),
                    scheme: spec.scheme,
                    parts: parts.clone(),
                    test_subject: fold.clone(),
                    train,
                    prior_key: None,
                    baseline: None,
                };
                let key = self::prior_key(&payload);
                if !priors_by_key.contains_key(&key) {
                    prior_order.push(key.clone());
                    priors_by_key.insert(
                        key.clone(),
                        TaskDef {
                            key: key.clone(),
                            kind: TaskKind::Prior,
                            fold: fold.clone(),
                            sweep_point: None,
                            deps: vec![],
                            payload,
                        },
                    );
                }
                Some(key)
            } else {
                None
            };
            let mut train = sp.train.clone();
            train.seed = derive_seed(sp.train.seed, fold, TaskKind::Target);
            let payload = TaskPayload {
                dataset_hash: sp.dataset_hash.clone(),
                scheme: spec.scheme,
                parts: parts.clone(),
                test_subject: fold.clone(),
                train,
                prior_key: prior_key.clone(),
                baseline: sp.baseline.clone(),
            };
            let key = target_key(&payload);
            targets.push(TaskDef {
                key,
                kind: TaskKind::Target,
                fold: fold.clone(),
                sweep_point: Some(sp.index),
                deps: prior_key.into_iter().collect(),
                payload,
            });
        }
    }
    let mut tasks: Vec<TaskDef> = prior_order
        .iter()
        .filter_map(|k| priors_by_key.remove(k))
        .collect();
    tasks.extend(targets);

    let datasets_by_hash = tags
        .iter()
        .map(|t| (datasets[t].hash.clone(), datasets[t].path.clone()))
        .collect();
    Ok(Plan {
        experiment: spec.name.clone(),
        spec_hash: spec.spec_hash(),
        scheme: spec.scheme,
        parts,
        sweep_points,
        tasks,
        folds: union_folds(folds_of.values().flatten()),
        datasets: datasets_by_hash,
        skipped,
    })
}

/// Keeps a label usable as a file name: letters, digits and `=,._-` stay, anything else becomes `_`.
pub fn safe_label(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=,._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::parse_spec;
    use mer_shared::composite::composite_list;
    use mer_shared::digest::sha256_hex;
    use mer_shared::prepared::{PrepInfo, SampleMeta};
    use std::collections::BTreeSet;

    /// A prepared-file summary with the composite's 442 samples and labels under megc3 (and, for CASME II
    /// and SAMM, a synthetic objective5 label), without any tensor.
    pub(crate) fn composite_summary(keyframes: &str) -> DatasetSummary {
        let samples = composite_list()
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let mut labels = BTreeMap::from([("megc3".to_string(), e.label)]);
                if e.dataset != Dataset::Smic {
                    labels.insert("objective5".to_string(), i % 5);
                }
                SampleMeta {
                    labels,
                    ..mer_shared::fixtures::sample(e.dataset, &e.subject, &e.filename, &[])
                }
            })
            .collect();
        DatasetSummary {
            hash: sha256_hex(keyframes.as_bytes()),
            path: PathBuf::from(format!("{keyframes}.safetensors")),
            info: PrepInfo {
                keyframes: keyframes.into(),
                interpolator: "farneback-warp-blend".into(),
                crop: "haar".into(),
                ..mer_shared::fixtures::prep_info("test", 112, 10)
            },
            samples,
        }
    }

    const HEAD: &str = "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n";

    fn plan(extra: &str) -> Plan {
        let spec = parse_spec("s.toml", &format!("{HEAD}{extra}")).unwrap();
        expand(&spec, &composite_summary("adaptive")).unwrap()
    }

    /// `composite_summary` with both optional baseline groups recorded.
    pub(crate) fn composite_with_groups(keyframes: &str) -> DatasetSummary {
        let mut s = composite_summary(keyframes);
        s.info.apex_flow = Some(mer_shared::prepared::ApexFlowInfo {
            size: 28,
            channels: vec!["u".into(), "v".into(), "strain".into()],
        });
        s.info.tim10 = Some(mer_shared::prepared::Tim10Info {
            size: 112,
            frames: 10,
        });
        s
    }

    #[test]
    fn methods_are_a_sweep_axis_and_baselines_have_no_prior_stage() {
        let spec = |extra: &str| parse_spec("s.toml", &format!("{HEAD}{extra}")).unwrap();
        let old = expand(
            &spec("[sweep]\nalpha = [1, 4]\n"),
            &composite_with_groups("adaptive"),
        )
        .unwrap();
        let p = expand(
            &spec("[sweep]\nalpha = [1, 4]\nmethod = [\"lbptop_svm\", \"mersiamc3d\", \"ststnet\", \"offapexnet\"]\n"),
            &composite_with_groups("adaptive"),
        )
        .unwrap();
        // Two MERSiamC3D points (the alpha axis) first, with the old points' task keys; one point per
        // baseline (the alpha axis does not multiply them), in the axis' order.
        let methods: Vec<Method> = p.sweep_points.iter().map(|s| s.method).collect();
        assert_eq!(
            methods,
            vec![
                Method::Mersiamc3d,
                Method::Mersiamc3d,
                Method::LbptopSvm,
                Method::Ststnet,
                Method::Offapexnet
            ]
        );
        assert_eq!(p.sweep_points[2].label, "method=lbptop_svm");
        assert_eq!(p.sweep_points[0].label, "method=mersiamc3d,alpha=1");
        let keys =
            |p: &Plan, i: u32| -> Vec<String> { p.targets_of(i).map(|t| t.key.clone()).collect() };
        assert_eq!(keys(&p, 0), keys(&old, 0));
        assert_eq!(keys(&p, 1), keys(&old, 1));
        let priors = p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count();
        assert_eq!(priors, 68, "prior tasks only for MERSiamC3D");
        assert_eq!(p.tasks.len(), 68 + 5 * 68);
        for i in 2..5 {
            for t in p.targets_of(i) {
                assert!(t.deps.is_empty() && t.payload.prior_key.is_none());
                assert_eq!(t.payload.method(), p.sweep_points[i as usize].method);
                assert_ne!(t.payload.test_subject, "");
            }
        }
        // Baseline keys depend on the method's settings and the seed, not on MERSiamC3D's `[train]`.
        let st = |extra: &str| {
            expand(
                &spec(&format!("method = \"ststnet\"\n{extra}")),
                &composite_with_groups("adaptive"),
            )
            .unwrap()
        };
        let base = keys(&st(""), 0);
        assert_eq!(base, keys(&p, 3));
        assert_eq!(base, keys(&st("[train.target.optim]\nlr = 0.1\n"), 0));
        assert_ne!(base, keys(&st("[methods.ststnet]\nepochs = 5\n"), 0));
        assert_ne!(base, keys(&st("[train]\nseed = 9\n"), 0));
        assert_eq!(st("").sweep_points[0].label, "method=ststnet");
        // Every fold of a baseline is a fold of MERSiamC3D: the same folds.
        let folds = |i: u32| p.targets_of(i).map(|t| t.fold.clone()).collect::<Vec<_>>();
        assert_eq!(folds(0), folds(4));
    }

    #[test]
    fn a_method_whose_inputs_are_missing_is_refused_with_the_prep_flag() {
        let spec = parse_spec(
            "s.toml",
            &format!("{HEAD}[sweep]\nmethod = [\"mersiamc3d\", \"lbptop_svm\"]\n"),
        )
        .unwrap();
        let e = expand(&spec, &composite_summary("adaptive"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lbptop_svm") && e.contains("--tim10") && e.contains("s.toml:5"),
            "{e}"
        );
        let mut only_apex = composite_with_groups("adaptive");
        only_apex.info.tim10 = None;
        let spec = parse_spec("s.toml", &format!("{HEAD}method = \"offapexnet\"\n")).unwrap();
        assert!(expand(&spec, &only_apex).is_ok());
        let spec = parse_spec("s.toml", &format!("{HEAD}method = \"lbptop_svm\"\n")).unwrap();
        let e = expand(&spec, &only_apex).unwrap_err().to_string();
        assert!(e.contains("--tim10") && e.contains("s.toml:4"), "{e}");
        // Bad settings are located in their table.
        let e = parse_spec(
            "s.toml",
            &format!("{HEAD}method = \"ststnet\"\n[methods.ststnet]\nlr = 0\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("s.toml:6") && e.contains("lr"), "{e}");
        let e = parse_spec(
            "s.toml",
            &format!("{HEAD}[sweep]\nmethod = [\"ststnet\", \"ststnet\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn composite_expands_to_68_folds_per_sweep_point() {
        let p = plan("[sweep]\nalpha = [1, 2, 3]\nfrozen_layers = [0, 1]\n");
        assert_eq!(p.folds.len(), 68);
        assert_eq!(p.sweep_points.len(), 6);
        let priors = p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count();
        let targets = p
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target)
            .count();
        assert_eq!(
            priors, 68,
            "one prior task per fold, shared by every sweep point"
        );
        assert_eq!(targets, 68 * 6);
        // Prior tasks come first and every target depends on its fold's prior task.
        assert!(p.tasks[..68].iter().all(|t| t.kind == TaskKind::Prior));
        for t in p.tasks.iter().filter(|t| t.kind == TaskKind::Target) {
            assert_eq!(t.deps.len(), 1);
            let prior = p.task(&t.deps[0]).unwrap();
            assert_eq!(prior.fold, t.fold);
            assert_eq!(t.payload.prior_key.as_deref(), Some(prior.key.as_str()));
        }
        let keys: BTreeSet<&str> = p.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys.len(), p.tasks.len(), "keys are unique");
        assert_eq!(p.sweep_points[0].label, "alpha=1,frozen=0");
        assert_eq!(p.folds[0], "smic/s01");
        assert_eq!(p.folds[16], "casme2/sub01");
        assert_eq!(p.parts, vec![Dataset::Smic, Dataset::Casme2, Dataset::Samm]);
    }

    #[test]
    fn seeds_multiply_prior_tasks_and_no_prior_has_no_dependency() {
        let p = plan("[sweep]\nseeds = [1, 2]\nprior = [true, false]\nfrozen_layers = [0, 2]\n");
        // (prior=true: frozen 0, 2) + (prior=false: frozen 0) = 3 points x 2 seeds.
        assert_eq!(p.sweep_points.len(), 6);
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert_eq!(
            p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count(),
            68 * 2
        );
        let d = p.describe();
        assert!(
            d.contains("68 LOSO folds")
                && d.contains("6 sweep point(s), 544 tasks (136 prior, 408 target)"),
            "{d}"
        );
        assert!(
            d.contains("skipped: prior=false with frozen_layers=2"),
            "{d}"
        );
        let no_prior: Vec<&SweepPoint> = p
            .sweep_points
            .iter()
            .filter(|s| !s.train.prior.enabled)
            .collect();
        assert_eq!(no_prior.len(), 2);
        assert_eq!(no_prior[0].label, "prior=false,seed=1");
        for t in p.targets_of(no_prior[0].index) {
            assert!(t.deps.is_empty() && t.payload.prior_key.is_none());
        }
        // Each seed's targets depend on that seed's prior tasks.
        let s1 = p
            .sweep_points
            .iter()
            .find(|s| s.label == "prior=true,frozen=2,seed=1")
            .unwrap();
        let s2 = p
            .sweep_points
            .iter()
            .find(|s| s.label == "prior=true,frozen=2,seed=2")
            .unwrap();
        let d1: Vec<_> = p.targets_of(s1.index).map(|t| t.deps[0].clone()).collect();
        let d2: Vec<_> = p.targets_of(s2.index).map(|t| t.deps[0].clone()).collect();
        assert!(d1.iter().zip(&d2).all(|(a, b)| a != b));
    }

    #[test]
    fn duplicate_and_irrelevant_combinations_collapse() {
        let p = plan("[sweep]\nalpha = [2, 2.0, 3]\nloss = [\"focal\", \"cross_entropy\"]\n");
        let labels: Vec<&str> = p.sweep_points.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "loss=focal,alpha=2",
                "loss=focal,alpha=3",
                "loss=cross_entropy"
            ]
        );
        assert_eq!(
            p.tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Target)
                .count(),
            68 * 3
        );
    }

    #[test]
    fn keys_are_stable_and_depend_only_on_what_matters() {
        let base = plan("[sweep]\nalpha = [2]\n");
        let again = plan("[sweep]\nalpha = [2]\n");
        assert_eq!(base.tasks, again.tasks);
        // The experiment name and description are not part of any key.
        let spec = parse_spec("o.toml", "name = \"other\"\ndescription = \"x\"\ndataset = \"elsewhere.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [2]\n").unwrap();
        let other = expand(&spec, &composite_summary("adaptive")).unwrap();
        assert_eq!(base.tasks, other.tasks);
        // Device, thread count, retries and lease length do not change keys either.
        let dev = plan("max_attempts = 9\nlease_seconds = 5\n[train]\ndevice = \"cpu\"\nthreads = 2\n[sweep]\nalpha = [2]\n");
        assert_eq!(
            dev.tasks.iter().map(|t| &t.key).collect::<Vec<_>>(),
            base.tasks.iter().map(|t| &t.key).collect::<Vec<_>>()
        );
        // A sweep point shared with a bigger experiment has the same tasks.
        let big = plan("[sweep]\nalpha = [1, 2, 3]\n");
        let shared: BTreeSet<&str> = big.tasks.iter().map(|t| t.key.as_str()).collect();
        assert!(base.tasks.iter().all(|t| shared.contains(t.key.as_str())));

        let target_keys = |p: &Plan| -> BTreeSet<String> {
            p.tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Target)
                .map(|t| t.key.clone())
                .collect()
        };
        let prior_keys = |p: &Plan| -> BTreeSet<String> {
            p.tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Prior)
                .map(|t| t.key.clone())
                .collect()
        };
        let b_t = target_keys(&base);
        let b_p = prior_keys(&base);
        // Target-stage settings change target keys only.
        for extra in [
            "[sweep]\nalpha = [3]\n",
            "[sweep]\nalpha = [2]\nfrozen_layers = [1]\n",
            "[train.target.optim]\nepochs = 99\n[sweep]\nalpha = [2]\n",
            "[train.target.optim]\nlr = 0.01\n[sweep]\nalpha = [2]\n",
            "[train.target.loss]\nkind = \"focal\"\ngamma = 1.0\nalpha = 1.0\n[sweep]\nalpha = [2]\n",
        ] {
            let p = plan(extra);
            assert!(target_keys(&p).is_disjoint(&b_t), "{extra}");
            assert_eq!(prior_keys(&p), b_p, "{extra}");
        }
        // Prior-stage, model, augmentation, numeric-path and seed settings change both.
        for extra in [
            "[train.prior.optim]\nepochs = 3\n[sweep]\nalpha = [2]\n",
            "[train.prior]\npairs_per_epoch = 100\n[sweep]\nalpha = [2]\n",
            "[train.model]\ndense = 64\n[sweep]\nalpha = [2]\n",
            "[train.augment]\ncrops = false\n[sweep]\nalpha = [2]\n",
            "[train]\nfast_path = false\n[sweep]\nalpha = [2]\n",
            "[train]\nseed = 7\n[sweep]\nalpha = [2]\n",
            "[sweep]\nalpha = [2]\nseeds = [5]\n",
        ] {
            let p = plan(extra);
            assert!(target_keys(&p).is_disjoint(&b_t), "{extra}");
            assert!(prior_keys(&p).is_disjoint(&b_p), "{extra}");
        }
        // Parts, scheme and dataset bytes change every key.
        let p = plan("parts = [\"casme2\", \"samm\"]\n[sweep]\nalpha = [2]\n");
        let casme = p
            .tasks
            .iter()
            .find(|t| t.fold == "casme2/sub01" && t.kind == TaskKind::Target)
            .unwrap();
        let casme_b = base
            .tasks
            .iter()
            .find(|t| t.fold == "casme2/sub01" && t.kind == TaskKind::Target)
            .unwrap();
        assert_ne!(casme.key, casme_b.key);
        let mut other_bytes = composite_summary("adaptive");
        other_bytes.hash = sha256_hex(b"other");
        let spec = parse_spec("s.toml", &format!("{HEAD}[sweep]\nalpha = [2]\n")).unwrap();
        let p = expand(&spec, &other_bytes).unwrap();
        assert!(target_keys(&p).is_disjoint(&b_t) && prior_keys(&p).is_disjoint(&b_p));
        // Seeds are derived per fold and recorded in the payload.
        let t0 = base
            .tasks
            .iter()
            .find(|t| t.kind == TaskKind::Target)
            .unwrap();
        assert_eq!(
            t0.payload.train.seed,
            derive_seed(0, &t0.fold, TaskKind::Target)
        );
        assert_ne!(
            derive_seed(0, "casme2/sub01", TaskKind::Target),
            derive_seed(0, "casme2/sub02", TaskKind::Target)
        );
        assert_ne!(
            derive_seed(0, "casme2/sub01", TaskKind::Target),
            derive_seed(1, "casme2/sub01", TaskKind::Target)
        );
    }

    #[test]
    fn dataset_dependent_errors_are_located() {
        let spec =
            parse_spec("s.toml", &format!("{HEAD}parts = [\"casme2\", \"samm\"]\n")).unwrap();
        let mut ds = composite_summary("adaptive");
        ds.samples.retain(|s| s.dataset != Dataset::Samm);
        let e = expand(&spec, &ds).unwrap_err().to_string();
        assert!(
            e.starts_with("s.toml:4:20: ") && e.contains("not in the prepared file"),
            "{e}"
        );
        // A scheme with no labelled sample in the chosen part.
        let spec = parse_spec(
            "s.toml",
            "name = \"t\"\ndataset = \"d\"\nscheme = \"emotion5\"\n",
        )
        .unwrap();
        let e = expand(&spec, &composite_summary("adaptive"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.toml:3:10: ") && e.contains("emotion5"),
            "{e}"
        );
        let spec = parse_spec(
            "s.toml",
            "name = \"t\"\ndataset = \"d\"\nscheme = \"objective5\"\nparts = [\"samm\"]\n",
        )
        .unwrap();
        let mut ds = composite_summary("adaptive");
        for s in ds.samples.iter_mut().filter(|s| s.dataset == Dataset::Samm) {
            s.labels.remove("objective5");
        }
        let e = expand(&spec, &ds).unwrap_err().to_string();
        assert!(
            e.starts_with("s.toml:4:10: ") && e.contains("no sample labelled"),
            "{e}"
        );
        // The key-frame tag must match the prepared file.
        let spec =
            parse_spec("s.toml", &format!("{HEAD}[sweep]\nkeyframes = [\"tim\"]\n")).unwrap();
        let e = expand(&spec, &composite_summary("adaptive"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:5:14: ") && e.contains("tim"), "{e}");
        // Model frames must match the file.
        let spec = parse_spec("s.toml", &format!("{HEAD}[train.model]\nframes = 8\n")).unwrap();
        let e = expand(&spec, &composite_summary("adaptive"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 frames"), "{e}");
    }

    #[test]
    fn objective5_folds_and_keyframe_datasets() {
        let spec = parse_spec(
            "s.toml",
            "name = \"t\"\ndataset = \"d\"\nscheme = \"objective5\"\nparts = [\"casme2\"]\n",
        )
        .unwrap();
        let p = expand(&spec, &composite_summary("adaptive")).unwrap();
        assert_eq!(p.folds.len(), 24);
        assert!(p.folds.iter().all(|f| f.starts_with("casme2/")));
        let spec = parse_spec(
            "s.toml",
            "name = \"t\"\nscheme = \"megc3\"\n[datasets]\nadaptive = \"a\"\ntas = \"b\"\n[sweep]\nalpha = [1, 2]\n",
        )
        .unwrap();
        let ds = BTreeMap::from([
            ("adaptive".to_string(), composite_summary("adaptive")),
            ("tas".to_string(), composite_summary("tas")),
        ]);
        let p = expand_multi(&spec, &ds).unwrap();
        assert_eq!(p.sweep_points.len(), 4);
        assert_eq!(p.sweep_points[0].label, "alpha=1,keyframes=adaptive");
        assert_eq!(p.datasets.len(), 2);
        assert_eq!(
            p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count(),
            68 * 2
        );
        assert!(expand(&spec, &composite_summary("adaptive")).is_err());
    }

    #[test]
    fn every_example_spec_parses_and_expands() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let spec = crate::spec::load_spec(&path).unwrap_or_else(|e| panic!("{e}"));
            let files: Vec<_> = spec.dataset.iter().chain(spec.datasets.values()).collect();
            assert!(
                !files.is_empty() && files.iter().all(|d| d.starts_with(&dir)),
                "{}: dataset paths are resolved",
                path.display()
            );
            let p = if spec.datasets.is_empty() {
                expand(&spec, &composite_with_groups("adaptive"))
            } else {
                // One composite-shaped file per tag, each with its own hash, made with the tag's method.
                let ds = spec
                    .datasets
                    .keys()
                    .map(|tag| {
                        let mut s = composite_summary(tag);
                        s.info.keyframes = tag.split('-').next().unwrap_or(tag).to_string();
                        (tag.clone(), s)
                    })
                    .collect();
                expand_multi(&spec, &ds)
            }
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let targets = p
                .tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Target)
                .count();
            assert_eq!(
                targets,
                p.folds.len() * p.sweep_points.len(),
                "{}",
                path.display()
            );
            seen.insert(
                spec.name.clone(),
                (p.folds.len(), p.sweep_points.len(), p.tasks.len() - targets),
            );
        }
        // (folds, sweep points, prior tasks) on a composite-shaped dataset.
        assert_eq!(seen["composite_megc3"], (68, 10, 68));
        assert_eq!(seen["alpha_sweep"], (68, 10, 68));
        assert_eq!(seen["ablation_frozen_layers"], (68, 7, 68));
        assert_eq!(seen["objective5_casme2"], (24, 3, 24));
        assert_eq!(seen["objective5_samm"], (28, 3, 28));
        assert_eq!(seen["tiny"], (68, 1, 68));
        assert_eq!(seen["mini"], (68, 2, 68));
        assert_eq!(seen["composite_small"], (68, 1, 68));
        // Two prepared files (two fill rules) x two alphas; one prior per fold and file.
        assert_eq!(seen["ablation_keyframe_fill"], (68, 4, 136));
        // One MERSiamC3D point with its priors, one point per baseline.
        assert_eq!(seen["methods_composite"], (68, 4, 68));
        assert_eq!(seen["methods_cpu"], (68, 4, 68));
        assert_eq!(seen.len(), 11);
    }

    #[test]
    fn dataset_summary_hashes_the_file_and_reads_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.safetensors");
        let full = composite_summary("tas");
        let casme: Vec<SampleMeta> = full
            .samples
            .into_iter()
            .filter(|s| s.dataset == Dataset::Casme2)
            .collect();
        let three: BTreeSet<String> = casme
            .iter()
            .map(|s| s.subject.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(3)
            .collect();
        let samples: Vec<SampleMeta> = casme
            .into_iter()
            .filter(|s| three.contains(&s.subject))
            .collect();
        let n = samples.len();
        let mut info = full.info;
        info.size = 4;
        let p = Prepared {
            info,
            samples: samples.clone(),
            shape: [n, 2, 10, 4, 4],
            flow: (0..n * 320).map(|x| x as f32).collect(),
            groups: Default::default(),
        };
        p.write(&path).unwrap();
        let s = dataset_summary(&path).unwrap();
        assert_eq!(s.hash, sha256_hex(&std::fs::read(&path).unwrap()));
        assert_eq!(s.samples, samples);
        assert_eq!(s.info.keyframes, "tas");
        // Through a spec: the tag defaults to the file's key-frame method; folds come from the header.
        let spec_path = dir.path().join("e.toml");
        std::fs::write(
            &spec_path,
            "name = \"e\"\ndataset = \"tiny.safetensors\"\nscheme = \"megc3\"\n",
        )
        .unwrap();
        let spec = crate::spec::load_spec(&spec_path).unwrap();
        let plan = plan_spec(&spec).unwrap();
        assert_eq!(plan.datasets[&s.hash], path);
        assert_eq!(plan.folds.len(), 3);
        assert!(plan.folds.iter().all(|f| f.starts_with("casme2/")));
        assert!(plan.tasks.iter().all(|t| t.payload.dataset_hash == s.hash));
        // A missing dataset is refused with its path.
        std::fs::write(
            &spec_path,
            "name = \"e\"\ndataset = \"nope.safetensors\"\nscheme = \"megc3\"\n",
        )
        .unwrap();
        let spec = crate::spec::load_spec(&spec_path).unwrap();
        let e = plan_spec(&spec).unwrap_err().to_string();
        assert!(
            e.contains("nope.safetensors") && e.contains("no such file"),
            "{e}"
        );
        // A corrupt one too.
        std::fs::write(dir.path().join("nope.safetensors"), b"garbage!garbage!").unwrap();
        let e = plan_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("nope.safetensors"), "{e}");
    }
}
