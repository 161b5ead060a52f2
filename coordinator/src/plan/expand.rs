//! The expansion of a spec into a task graph, in the order its phases run: the key-frame tags and their
//! files' checks, the dataset parts, the LOSO folds, the combinations of the sweep axes, the sweep points
//! (combinations that resolve to the same settings collapse), and the tasks.

use super::graph::TaskGraph;
use super::keys::to_value;
use super::{load_datasets, safe_label, DatasetSummary, Plan, SweepPoint, TaskDef, TaskKind};
use crate::error::CoordError;
use crate::spec::Protocol;
use crate::spec::{ExperimentSpec, LossKind, PathSeg};
use mer_shared::digest::canonical_json;
use mer_shared::loso::{loso_folds, union_folds, FoldId};
use mer_shared::method::{BaselineSettings, Method};
use mer_shared::train_config::{Alpha, LossConfig, TrainConfig};
use mer_shared::Dataset;
use serde_json::json;
use std::collections::BTreeMap;

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

/// A user method's point: its swept params (for the label) and its task settings.
type UserPoint = (BTreeMap<String, serde_json::Value>, BaselineSettings);

/// One combination of the axes before resolution.
pub(super) struct Combo {
    method: Method,
    /// A user method's point: its swept params (for the label) and its task settings.
    user: Option<UserPoint>,
    loss: LossKind,
    alpha: Option<f64>,
    prior: bool,
    frozen: usize,
    tag: String,
    seed: u64,
    /// The `variant` axis's name (`None` without the axis).
    variant: Option<String>,
}

/// Expands a spec against the summaries of its prepared files (keyed by key-frame tag, as
/// [`load_datasets`] returns them).
pub fn expand_multi(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
) -> Result<Plan, CoordError> {
    let tags = key_frame_tags(spec, datasets)?;
    let parts = resolve_parts(spec, datasets, &tags)?;
    let mut folds_of = fold_sets(spec, datasets, &tags, &parts)?;
    let mut folds_of_data = None;
    if let Some(chosen) = &spec.folds {
        folds_of_data = Some(union_folds(folds_of.values().flatten()).len());
        folds_of = chosen_folds(spec, datasets, folds_of, chosen)?;
    }
    let variants = spec.variants()?;
    let (combos, skipped) = combinations(spec, &tags, &variants)?;
    let sweep_points = sweep_points(spec, datasets, combos, &variants);
    let mut tasks = tasks(spec, datasets, &parts, &sweep_points, &folds_of);
    let selection = match spec.inner_folds() {
        None => None,
        Some(k) => {
            let (sel, inner) =
                super::nested::inner_tasks(spec, &parts, &sweep_points, &folds_of, k)?;
            // Prior tasks stay first: inner priors go before the first target task.
            let first_target = tasks
                .iter()
                .position(|t| t.kind == TaskKind::Target)
                .unwrap_or(tasks.len());
            let (inner_priors, inner_targets): (Vec<TaskDef>, Vec<TaskDef>) =
                inner.into_iter().partition(|t| t.kind == TaskKind::Prior);
            tasks.splice(first_target..first_target, inner_priors);
            tasks.extend(inner_targets);
            Some(sel)
        }
    };
    let datasets_by_hash = tags
        .iter()
        .map(|t| (datasets[t].hash.clone(), datasets[t].path.clone()))
        .collect();
    Ok(Plan {
        experiment: spec.name.clone(),
        spec_hash: spec.spec_hash(),
        scheme: spec.scheme,
        parts,
        protocol: spec.protocol,
        sweep_points,
        tasks,
        folds: union_folds(folds_of.values().flatten()),
        folds_of_data,
        datasets: datasets_by_hash,
        skipped,
        selection,
    })
}

/// The key-frame tags (the sweep's, or every dataset given), each checked against its file: the tag
/// names the file's key-frame method, the file holds every method's input group, and MERSiamC3D's
/// geometry fits its flow tensor.
fn key_frame_tags(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
) -> Result<Vec<String>, CoordError> {
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
            if let Some(g) = spec
                .methods
                .inputs_of(method)
                .into_iter()
                .find(|g| !ds.info.has_group(*g))
            {
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
            && (!m.reads_file_frames(ds.info.frames as i64)
                || m.channels != ds.info.channels.len() as i64)
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
    Ok(tags)
}

/// The dataset parts: the spec's (each present and labelled in every file), or every part with a
/// sample labelled under the scheme; sorted.
fn resolve_parts(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
    tags: &[String],
) -> Result<Vec<Dataset>, CoordError> {
    use PathSeg::{Index, Key};
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
                for tag in tags {
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
    Ok(parts)
}

/// The folds of each tag's file over the parts: its LOSO folds (at least 2), or under `protocol = "lodo"`
/// one fold per part with a labelled sample (at least 2 parts).
fn fold_sets<'t>(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
    tags: &'t [String],
    parts: &[Dataset],
) -> Result<BTreeMap<&'t str, Vec<FoldId>>, CoordError> {
    let folds_of: BTreeMap<&str, Vec<FoldId>> = tags
        .iter()
        .map(|t| {
            let subjects = loso_folds(&datasets[t].samples, spec.scheme, parts);
            let folds = match spec.protocol {
                Protocol::Loso => subjects,
                Protocol::Lodo => union_folds(
                    subjects
                        .iter()
                        .map(|f| FoldId::part(f.dataset()))
                        .collect::<Vec<_>>()
                        .iter(),
                ),
            };
            (t.as_str(), folds)
        })
        .collect();
    for (t, f) in &folds_of {
        if f.len() < 2 {
            let (what, needs) = match spec.protocol {
                Protocol::Loso => ("subject(s)", "LOSO needs at least 2"),
                Protocol::Lodo => (
                    "dataset part(s)",
                    "leave-one-dataset-out needs at least 2 (give more parts, or protocol = \"loso\")",
                ),
            };
            return Err(CoordError::Plan(format!(
                "{} has {} {what} labelled under {} in parts {:?}: {needs}",
                datasets[*t].path.display(),
                f.len(),
                spec.scheme,
                parts.iter().map(|p| p.key()).collect::<Vec<_>>()
            )));
        }
    }
    Ok(folds_of)
}

/// Keeps only the spec's `folds`, each of which must be a fold of every tag's file.
fn chosen_folds<'t>(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
    folds_of: BTreeMap<&'t str, Vec<FoldId>>,
    chosen: &[String],
) -> Result<BTreeMap<&'t str, Vec<FoldId>>, CoordError> {
    for (t, f) in &folds_of {
        let names: Vec<String> = f.iter().map(FoldId::to_string).collect();
        if let Some((i, c)) = chosen.iter().enumerate().find(|(_, c)| !names.contains(c)) {
            return Err(spec.error(
                &[PathSeg::Key("folds"), PathSeg::Index(i)],
                format!(
                    "'{c}' is not a {} fold of {} under {} (its folds: {})",
                    match spec.protocol {
                        Protocol::Loso => "leave-one-subject-out",
                        Protocol::Lodo => "leave-one-dataset-out",
                    },
                    datasets[*t].path.display(),
                    spec.scheme,
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(folds_of
        .into_iter()
        .map(|(t, f)| {
            let kept = f
                .into_iter()
                .filter(|id| chosen.contains(&id.to_string()))
                .collect();
            (t, kept)
        })
        .collect())
}

/// The test subjects of a leave-one-dataset-out fold: every LOSO subject of its part in the tag's file
/// (`None` for a LOSO fold).
fn part_subjects(
    spec: &ExperimentSpec,
    data: &DatasetSummary,
    parts: &[Dataset],
    fold: &FoldId,
) -> Option<Vec<String>> {
    fold.is_part().then(|| {
        loso_folds(&data.samples, spec.scheme, parts)
            .iter()
            .filter(|f| f.dataset() == fold.dataset())
            .map(FoldId::to_string)
            .collect()
    })
}

/// Every combination of the sweep axes, MERSiamC3D's first, and the combinations dropped (with why).
fn combinations(
    spec: &ExperimentSpec,
    tags: &[String],
    variants: &[(Option<String>, TrainConfig)],
) -> Result<(Vec<Combo>, Vec<String>), CoordError> {
    // The cartesian product, in axis order variant, loss, alpha, prior, frozen, keyframes, seed.
    let alphas: Vec<Option<f64>> = match &spec.sweep.alpha {
        Some(a) => a.iter().map(|x| Some(*x)).collect(),
        None => vec![None],
    };
    let mut combos = Vec::new();
    let mut skipped = Vec::new();
    // A baseline has none of MERSiamC3D's axes: one combination per key-frame tag and seed (and per
    // point of a user method's own sweep).
    for method in spec
        .method_axis()
        .into_iter()
        .filter(|m| *m != Method::Mersiamc3d)
    {
        for user in user_points(spec, &method)? {
            for tag in tags {
                for seed in spec.seeds() {
                    combos.push(Combo {
                        method: method.clone(),
                        user: user.clone(),
                        loss: LossKind::CrossEntropy,
                        alpha: None,
                        prior: false,
                        frozen: 0,
                        tag: tag.clone(),
                        seed,
                        variant: None,
                    });
                }
            }
        }
    }
    let engine_variants = if spec.method_axis().contains(&Method::Mersiamc3d) {
        variants
    } else {
        &[]
    };
    for (variant, base) in engine_variants {
        for loss in spec.losses_of(base) {
            for alpha in &alphas {
                for prior in &spec.priors_of(base) {
                    for frozen in spec.frozen_of(base) {
                        for tag in tags {
                            for seed in spec.seeds_of(base) {
                                if !prior && frozen > 0 {
                                    skipped.push(format!(
                                    "prior=false with frozen_layers={frozen}: frozen layers need prior-learned weights"
                                ));
                                    continue;
                                }
                                combos.push(Combo {
                                    method: Method::Mersiamc3d,
                                    user: None,
                                    loss,
                                    alpha: *alpha,
                                    prior: *prior,
                                    frozen,
                                    tag: tag.clone(),
                                    seed,
                                    variant: variant.clone(),
                                });
                            }
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
    Ok((combos, skipped))
}

/// The points of a method other than MERSiamC3D: one `None` for a built-in baseline, one per point of
/// its own sweep for a user method (its swept values and its task settings). A user method whose files
/// were never read (a spec parsed from text without [`ExperimentSpec::resolve_method_files`] or a
/// submission's file list) is an error: its task keys would not cover the files.
fn user_points(
    spec: &ExperimentSpec,
    method: &Method,
) -> Result<Vec<Option<UserPoint>>, CoordError> {
    let Method::User(name) = method else {
        return Ok(vec![None]);
    };
    let Some(cfg) = spec.methods.user.get(name) else {
        return Err(spec.error(
            &[PathSeg::Key("methods")],
            format!("method '{name}' has no [methods.{name}] table"),
        ));
    };
    cfg.points()
        .into_iter()
        .map(|(swept, params)| {
            let task = cfg.task(name, params).ok_or_else(|| {
                CoordError::Plan(format!(
                    "method '{name}': its files were not read and hashed (load the spec from its file, or submit it with its files)"
                ))
            })?;
            Ok(Some((swept, BaselineSettings::User(task))))
        })
        .collect()
}

/// The sweep points: each combination resolved to its training settings, those that resolve to the same
/// settings collapsed into one, with its label and swept values.
fn sweep_points(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
    combos: Vec<Combo>,
    variants: &[(Option<String>, TrainConfig)],
) -> Vec<SweepPoint> {
    let mut sweep_points: Vec<SweepPoint> = Vec::new();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for c in combos {
        let ds = &datasets[&c.tag];
        let baseline = match &c.user {
            Some((_, settings)) => Some(settings.clone()),
            None => spec.methods.settings(&c.method),
        };
        if let Some(b) = &baseline {
            // A baseline uses only the device, thread count and seed of `[train]`.
            let train = TrainConfig {
                device: spec.train.device.clone(),
                threads: spec.train.threads,
                fast_path: spec.train.fast_path,
                seed: c.seed,
                eval_every: spec.train.eval_every,
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
            for (k, v) in c.user.iter().flat_map(|(swept, _)| swept) {
                values.insert(k.clone(), v.clone());
                label.push(format!("{k}={}", mer_shared::user_method::label_value(v)));
            }
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
                method: c.method.clone(),
                baseline,
                keyframes: c.tag.clone(),
                dataset_hash: ds.hash.clone(),
                train,
            });
            continue;
        }
        let base = variants
            .iter()
            .find(|(name, _)| *name == c.variant)
            .map_or(&spec.train, |(_, t)| t);
        let mut train = base.clone();
        train.prior.enabled = c.prior;
        train.target.frozen_layers = c.frozen;
        train.seed = c.seed;
        train.target.loss = match c.loss {
            LossKind::CrossEntropy => LossConfig::CrossEntropy,
            LossKind::Focal => {
                let (gamma, alpha) = match &base.target.loss {
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
        if let Some(v) = &c.variant {
            values.insert("variant".to_string(), json!(v));
            label.push(format!("variant={v}"));
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
    sweep_points
}

/// The tasks: one prior task per fold and distinct prior setting (for MERSiamC3D points with prior
/// learning), then one target task per sweep point and fold.
fn tasks(
    spec: &ExperimentSpec,
    datasets: &BTreeMap<String, DatasetSummary>,
    parts: &[Dataset],
    sweep_points: &[SweepPoint],
    folds_of: &BTreeMap<&str, Vec<FoldId>>,
) -> Vec<TaskDef> {
    let mut graph = TaskGraph::default();
    for sp in sweep_points {
        let data = &datasets[&sp.keyframes];
        for fold in &folds_of[sp.keyframes.as_str()] {
            let held = part_subjects(spec, data, parts, fold);
            graph.add(spec, parts, sp, &fold.to_string(), None, held);
        }
    }
    graph.into_tasks()
}
