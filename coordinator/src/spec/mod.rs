//! Experiment specs: the TOML file a researcher writes (dataset, label scheme, parts, LOSO, training
//! settings, sweep axes, launcher), parsed with `deny_unknown_fields` everywhere and checked for
//! contradictions. Every error names the file and, where the input has one, the line and column.
//! The full reference is `docs/experiments.md`.

use crate::error::CoordError;
pub mod slurm;

use mer_shared::method::{Method, MethodsConfig};
use mer_shared::train_config::{LossConfig, TrainConfig};
use mer_shared::{Dataset, LabelScheme};
use serde::{Deserialize, Serialize};
pub use slurm::SlurmSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Default number of attempts before a task gives up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Inner splits per outer fold when `[selection] mode = "nested"` gives no `inner_folds`.
pub const DEFAULT_INNER_FOLDS: usize = 3;
/// Default lease length (seconds), extended by every heartbeat.
pub const DEFAULT_LEASE_SECONDS: u64 = 120;

/// One experiment: what to train, on what data, under which protocol, over which sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Experiment name (letters, digits, `.`, `_`, `-`); names the run folder. Not part of any task key.
    pub name: String,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: String,
    /// The prepared dataset (a `mer prep` safetensors file). Exactly one of `dataset` / `[datasets]`.
    #[serde(default)]
    pub dataset: Option<PathBuf>,
    /// Prepared datasets keyed by key-frame tag (for a `keyframes` sweep over several prepared files).
    #[serde(default)]
    pub datasets: BTreeMap<String, PathBuf>,
    /// Label scheme: `megc3`, `objective5` or `emotion5`.
    pub scheme: LabelScheme,
    /// Dataset parts to include; `None` = every part of the dataset with a sample labelled under `scheme`.
    #[serde(default)]
    pub parts: Option<Vec<Dataset>>,
    /// The test folds to run (`dataset/subject`, or a part under `lodo`); `None` = every fold. For an
    /// ablation on a subset fixed before the runs: training still uses every other subject, and pooled
    /// scores cover only these folds' test samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<Vec<String>>,
    /// Evaluation protocol: `loso` (the default) or `lodo`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where prior learning runs (only `per_fold`: on the fold's training subjects, never the test subject).
    #[serde(default)]
    pub prior_scope: PriorScope,
    /// The recognition method (`mersiamc3d`, the default, a baseline: `ststnet`, `offapexnet`,
    /// `lbptop_svm`, or one of the spec's own `[methods.<name>]`); `[sweep] method` runs several on the
    /// same folds.
    #[serde(default, skip_serializing_if = "is_default_method")]
    pub method: Method,
    /// The baselines' settings tables (`[methods.ststnet]`, ...), the originals' values by default, and
    /// the spec's own methods (`[methods.<name>]` with a `command`: `docs/own-model.md`).
    #[serde(default, skip_serializing_if = "is_default_methods")]
    pub methods: MethodsConfig,
    /// Training settings of every fold (paper defaults); sweep axes override single fields. For a
    /// baseline only `device`, `threads` and `seed` apply.
    #[serde(default)]
    pub train: TrainConfig,
    /// Sweep axes; their cartesian product is the set of sweep points.
    #[serde(default)]
    pub sweep: SweepSpec,
    /// How a sweep point is chosen for each outer fold: not at all (every point is reported, the default)
    /// or by nested selection on inner splits of the fold's training subjects.
    #[serde(default, skip_serializing_if = "SelectionSpec::is_default")]
    pub selection: SelectionSpec,
    /// Who starts the workers: `local` (processes on this machine), `kubernetes` or `slurm`.
    #[serde(default)]
    pub launcher: LauncherKind,
    /// Settings of the Kubernetes launcher (required when `launcher = "kubernetes"`).
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    /// Settings of the Slurm launcher (`launcher = "slurm"`; every field has a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSpec>,
    /// Attempts per task before it gives up (failures and lost leases both count).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Lease length in seconds; a lease not renewed by a heartbeat within it is lost.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// The text the spec was parsed from (to locate errors found later, e.g. against the dataset).
    #[serde(skip)]
    pub source: Option<SpecSource>,
}

// Left out of the spec's JSON when default, so a spec written before methods existed keeps its hash.
fn is_default_method(m: &Method) -> bool {
    *m == Method::default()
}

fn is_default_methods(m: &MethodsConfig) -> bool {
    *m == MethodsConfig::default()
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_lease_seconds() -> u64 {
    DEFAULT_LEASE_SECONDS
}

/// The file name and text a spec came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecSource {
    /// File name as given to [`parse_spec`].
    pub file: String,
    /// The TOML text.
    pub text: String,
}

/// Evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Leave one subject out: one fold per subject with at least one labelled sample.
    #[default]
    Loso,
    /// Leave one dataset out: one fold per dataset part with a labelled sample, which tests on every subject
    /// of that part and trains on the other parts (at least two parts).
    Lodo,
}

impl Protocol {
    /// The name in specs, results and reports.
    pub fn key(self) -> &'static str {
        match self {
            Protocol::Loso => "loso",
            Protocol::Lodo => "lodo",
        }
    }
}

/// Scope of prior (siamese) learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorScope {
    /// One prior-learning task per fold (and seed), on that fold's training subjects only.
    #[default]
    PerFold,
}

/// The launcher kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LauncherKind {
    /// Worker processes on this machine (`mer run`).
    #[default]
    Local,
    /// A Kubernetes Job of worker pods.
    Kubernetes,
    /// Slurm job arrays of pilot workers, submitted by the coordinator on a login node.
    Slurm,
}

/// Settings of the Kubernetes launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Container image of the workers.
    pub image: String,
    /// Namespace of the Job.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Worker pods (Job parallelism).
    #[serde(default = "one")]
    pub workers: u32,
    /// GPUs requested per pod (0 = CPU pods).
    #[serde(default)]
    pub gpus_per_worker: u32,
    /// Training slots per device in each worker.
    #[serde(default = "one")]
    pub slots_per_device: u32,
}

fn default_namespace() -> String {
    "default".into()
}

fn one() -> u32 {
    1
}

/// Target-loss kinds a sweep can choose between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Multi-class focal loss (gamma from `[train.target.loss]`, 2 by default).
    Focal,
    /// Softmax cross-entropy.
    CrossEntropy,
}

impl LossKind {
    /// The key used in specs, labels and JSON.
    pub fn key(self) -> &'static str {
        match self {
            LossKind::Focal => "focal",
            LossKind::CrossEntropy => "cross_entropy",
        }
    }
}

/// Sweep axes. An absent axis takes its single value from `[train]`; a present axis must not be empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Recognition methods run on the same folds (MERSiamC3D's axes below do not multiply the baselines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Vec<Method>>,
    /// Scalar focal-loss alphas (the paper's Fig. 4 sweeps 1..10).
    #[serde(default)]
    pub alpha: Option<Vec<f64>>,
    /// Number of frozen conv layers k, each in 0..=5 (the paper's Table 7).
    #[serde(default)]
    pub frozen_layers: Option<Vec<usize>>,
    /// Target losses.
    #[serde(default)]
    pub loss: Option<Vec<LossKind>>,
    /// With (`true`) and/or without (`false`) prior learning.
    #[serde(default)]
    pub prior: Option<Vec<bool>>,
    /// Key-frame method tags; each names a prepared file whose `PrepInfo.keyframes` it must match.
    #[serde(default)]
    pub keyframes: Option<Vec<String>>,
    /// Base seeds (replace `train.seed`); each fold derives its own seed from it.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Named departures from `[train]` for settings without an axis of their own (the tower, input
    /// scaling, augmentation, the optimiser...): each is a partial `[train]` table, merged into `[train]`
    /// key by key (tables recursively, anything else replaced; `target.loss` is replaced whole), e.g.
    /// `two_streams = { model = { groups = 2 } }`; an empty table is `[train]` itself. One MERSiamC3D point per name, in name order, multiplied by
    /// the other axes; an axis not swept takes its value from the variant's merged settings. So one spec
    /// holds an ablation that would otherwise be a near-copy of a spec per change, on the same folds. A
    /// point's settings, task keys and results are exactly those of a spec whose `[train]` is the merged
    /// table. Left out of the spec's JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<BTreeMap<String, toml::Table>>,
}

/// `[selection]`: how a sweep point is chosen without looking at the test subject. Left out of the spec's
/// JSON when default, so specs written before it keep their hash.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionSpec {
    /// `none` (report every point; the reader chooses nothing) or `nested`.
    #[serde(default)]
    pub mode: SelectionMode,
    /// Subject-grouped inner splits per outer fold (`nested` only; at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_folds: Option<usize>,
    /// Seed of the inner splits' subject shuffle (`nested` only; default `train.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl SelectionSpec {
    fn is_default(&self) -> bool {
        *self == SelectionSpec::default()
    }
}

/// Selection modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMode {
    /// No selection: every sweep point's clean result is reported.
    #[default]
    None,
    /// Nested selection: per outer fold, every point of a method is trained on `inner_folds` inner splits
    /// of the fold's training subjects and the point with the best pooled inner UF1 is the fold's choice.
    Nested,
}

/// One element of a key path inside the spec, for locating errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'a> {
    /// A table key.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

impl SpecSource {
    /// 1-based (line, column) of the value at `path`, or of its nearest existing ancestor; (0, 0) when
    /// nothing of it is in the text.
    pub fn locate(&self, path: &[PathSeg<'_>]) -> (usize, usize) {
        let Ok(root) = toml::de::DeTable::parse(&self.text) else {
            return (0, 0);
        };
        let mut best: Option<usize> = None;
        let mut cur: Option<&toml::Spanned<toml::de::DeValue<'_>>> = None;
        for (i, seg) in path.iter().enumerate() {
            let next = match (seg, cur) {
                (PathSeg::Key(k), None) if i == 0 => root.get_ref().get_key_value(*k),
                (PathSeg::Key(k), Some(v)) => {
                    v.get_ref().as_table().and_then(|t| t.get_key_value(*k))
                }
                _ => None,
            };
            match (seg, next) {
                (PathSeg::Key(_), Some((key, val))) => {
                    // The key for a table/field, the value itself for scalars and arrays.
                    best = Some(if val.get_ref().is_table() {
                        key.span().start
                    } else {
                        val.span().start
                    });
                    cur = Some(val);
                }
                (PathSeg::Index(ix), _) => {
                    let el = cur
                        .and_then(|v| v.get_ref().as_array())
                        .and_then(|a| a.get(*ix));
                    match el {
                        Some(el) => {
                            best = Some(el.span().start);
                            cur = Some(el);
                        }
                        None => break,
                    }
                }
                _ => break,
            }
        }
        match best {
            Some(off) => line_col(&self.text, off),
            None => (0, 0),
        }
    }

    /// A spec error located at `path`.
    pub fn error(&self, path: &[PathSeg<'_>], message: impl Into<String>) -> CoordError {
        let (line, col) = self.locate(path);
        CoordError::Spec {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte offset `off` in `text`.
pub fn line_col(text: &str, off: usize) -> (usize, usize) {
    let off = off.min(text.len());
    let before = text.get(..off).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl ExperimentSpec {
    /// Makes relative dataset paths relative to the folder of the spec file at `spec_path` (as written
    /// in the spec, they are relative to it). Client and coordinator both do this, so they agree on the
    /// spec hash.
    pub fn resolve_relative_to(&mut self, spec_path: &Path) {
        let base = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.dataset = self.dataset.as_ref().map(resolve);
        self.datasets = self
            .datasets
            .iter()
            .map(|(k, p)| (k.clone(), resolve(p)))
            .collect();
    }

    /// A spec error located at `path` (in the source text when known).
    pub fn error(&self, path: &[PathSeg<'_>], message: impl Into<String>) -> CoordError {
        match &self.source {
            Some(s) => s.error(path, message),
            None => CoordError::Spec {
                file: "<spec>".into(),
                line: 0,
                col: 0,
                message: message.into(),
            },
        }
    }

    /// Every prepared file the spec names, keyed by key-frame tag (`None`: the single `dataset`).
    pub fn dataset_files(&self) -> Vec<(Option<String>, PathBuf)> {
        match &self.dataset {
            Some(p) => vec![(None, p.clone())],
            None => self
                .datasets
                .iter()
                .map(|(k, p)| (Some(k.clone()), p.clone()))
                .collect(),
        }
    }

    /// The effective values of the `loss` axis (the `[train]` loss when not swept).
    pub fn losses(&self) -> Vec<LossKind> {
        self.losses_of(&self.train)
    }

    /// The `loss` axis for a point whose settings before the axes are `base` (`[train]`, or a variant's).
    pub fn losses_of(&self, base: &TrainConfig) -> Vec<LossKind> {
        self.sweep.loss.clone().unwrap_or_else(|| {
            vec![match base.target.loss {
                LossConfig::Focal { .. } => LossKind::Focal,
                LossConfig::CrossEntropy => LossKind::CrossEntropy,
            }]
        })
    }

    /// The effective values of the `prior` axis.
    pub fn priors(&self) -> Vec<bool> {
        self.priors_of(&self.train)
    }

    /// The `prior` axis for a point whose settings before the axes are `base`.
    pub fn priors_of(&self, base: &TrainConfig) -> Vec<bool> {
        self.sweep
            .prior
            .clone()
            .unwrap_or_else(|| vec![base.prior.enabled])
    }

    /// The effective values of the `frozen_layers` axis.
    pub fn frozen(&self) -> Vec<usize> {
        self.frozen_of(&self.train)
    }

    /// The `frozen_layers` axis for a point whose settings before the axes are `base`.
    pub fn frozen_of(&self, base: &TrainConfig) -> Vec<usize> {
        self.sweep
            .frozen_layers
            .clone()
            .unwrap_or_else(|| vec![base.target.frozen_layers])
    }

    /// The `variant` axis resolved: each name with `[train]` and its table merged; one unnamed entry
    /// holding `[train]` itself when the axis is absent. The error names the variant and the bad key.
    pub fn variants(&self) -> Result<Vec<(Option<String>, TrainConfig)>, CoordError> {
        let Some(variants) = &self.sweep.variant else {
            return Ok(vec![(None, self.train.clone())]);
        };
        let mut out = Vec::with_capacity(variants.len());
        for (name, table) in variants {
            let json = |what: &str, source| CoordError::Json {
                what: format!("{what} (sweep.variant.{name})"),
                source,
            };
            let mut merged = serde_json::to_value(&self.train).map_err(|e| json("[train]", e))?;
            let over = serde_json::to_value(table).map_err(|e| json("the variant's table", e))?;
            merge_json(&mut merged, over, &mut Vec::new());
            let train: TrainConfig = serde_json::from_value(merged).map_err(|e| {
                self.error(
                    &[
                        PathSeg::Key("sweep"),
                        PathSeg::Key("variant"),
                        PathSeg::Key(name),
                    ],
                    format!("sweep.variant.{name}: {e} (a variant is a partial [train] table)"),
                )
            })?;
            out.push((Some(name.clone()), train));
        }
        Ok(out)
    }

    /// The effective values of the `method` axis.
    pub fn method_axis(&self) -> Vec<Method> {
        self.sweep
            .method
            .clone()
            .unwrap_or_else(|| vec![self.method.clone()])
    }

    /// Checks the spec's own methods: every user method the `method` axis names has a table, and every
    /// table's fields are in range (errors at the field).
    fn validate_user_methods(&self) -> Result<(), CoordError> {
        use PathSeg::{Index, Key};
        for (i, m) in self.method_axis().iter().enumerate() {
            let Method::User(name) = m else { continue };
            if !self.methods.user.contains_key(name) {
                let path: Vec<PathSeg<'_>> = if self.sweep.method.is_some() {
                    vec![Key("sweep"), Key("method"), Index(i)]
                } else {
                    vec![Key("method")]
                };
                let builtins: Vec<&str> = Method::ALL.iter().map(|m| m.key()).collect();
                return Err(self.error(
                    &path,
                    format!("method '{name}' is not built in ({}) and the spec defines no [methods.{name}] table with a `command`", builtins.join(", ")),
                ));
            }
        }
        for (name, u) in &self.methods.user {
            if let Err((field, message)) = u.validate() {
                let mut path = vec![Key("methods"), Key(name)];
                let segs: Vec<&str> = field.split('.').collect();
                for seg in &segs {
                    path.push(match seg.parse::<usize>() {
                        Ok(i) => Index(i),
                        Err(_) => Key(seg),
                    });
                }
                return Err(self.error(&path, format!("methods.{name}.{field}: {message}")));
            }
        }
        Ok(())
    }

    /// Reads every file of the spec's own methods (relative to the folder of the spec at `spec_path`),
    /// records their sha256 in the spec, and returns each file's local path with its hash (what a
    /// client uploads). A missing or unreadable file is an error at its place in the spec.
    pub fn resolve_method_files(
        &mut self,
        spec_path: &Path,
    ) -> Result<Vec<(PathBuf, String)>, CoordError> {
        use PathSeg::{Index, Key};
        let base = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut local = Vec::new();
        let mut resolved = BTreeMap::new();
        for (name, u) in &self.methods.user {
            let mut shipped = Vec::with_capacity(u.files.len());
            for (i, f) in u.files.iter().enumerate() {
                let path = base.join(f);
                let sha = mer_shared::digest::sha256_file(&path).map_err(|e| {
                    self.error(
                        &[Key("methods"), Key(name), Key("files"), Index(i)],
                        format!("methods.{name}.files: cannot read it: {e}"),
                    )
                })?;
                shipped.push(mer_shared::user_method::ShippedFile {
                    path: f.clone(),
                    sha256: sha.clone(),
                });
                local.push((path, sha));
            }
            resolved.insert(name.clone(), shipped);
        }
        self.set_method_files(resolved);
        Ok(local)
    }

    /// Records the files of the spec's own methods as a submission names them (method -> files).
    pub fn set_method_files(
        &mut self,
        mut files: BTreeMap<String, Vec<mer_shared::user_method::ShippedFile>>,
    ) {
        for (name, u) in self.methods.user.iter_mut() {
            u.shipped = files.remove(name);
        }
    }

    /// The files of the spec's own methods as resolved (method -> files), for a submission.
    pub fn method_files(&self) -> BTreeMap<String, Vec<mer_shared::user_method::ShippedFile>> {
        self.methods
            .user
            .iter()
            .filter_map(|(n, u)| u.shipped.clone().map(|s| (n.clone(), s)))
            .collect()
    }

    /// The effective base seeds.
    pub fn seeds(&self) -> Vec<u64> {
        self.seeds_of(&self.train)
    }

    /// The base seeds for a point whose settings before the axes are `base`.
    pub fn seeds_of(&self, base: &TrainConfig) -> Vec<u64> {
        self.sweep.seeds.clone().unwrap_or_else(|| vec![base.seed])
    }

    /// A stable hash of the spec (sha256 hex of its canonical JSON; the source text is left out). The
    /// launcher and its tables are left out too: where the workers run (locally, Kubernetes, Slurm)
    /// does not change what they compute, so a spec run locally and submitted with `--slurm` is the
    /// same experiment and writes the same `results.json`.
    pub fn spec_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(m) = v.as_object_mut() {
            for k in ["launcher", "kubernetes", "slurm"] {
                m.remove(k);
            }
        }
        mer_shared::digest::sha256_json(&v)
    }

    /// Refuses an empty list `key` (leaving it out would `otherwise`) and an item listed twice.
    fn listed_once<T: Ord + std::fmt::Display>(
        &self,
        key: &str,
        what: &str,
        items: &[T],
        otherwise: &str,
    ) -> Result<(), CoordError> {
        if items.is_empty() {
            return Err(self.error(
                &[PathSeg::Key(key)],
                format!("{key} is empty; leave it out to {otherwise}"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            if !seen.insert(item) {
                return Err(self.error(
                    &[PathSeg::Key(key), PathSeg::Index(i)],
                    format!("{what} '{item}' is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// Checks everything that can be checked without the dataset. Called by [`parse_spec`].
    pub fn validate(&self) -> Result<(), CoordError> {
        use PathSeg::{Index, Key};
        let e = |path: &[PathSeg<'_>], m: String| self.error(path, m);
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            || self.name.starts_with('.')
        {
            return Err(e(
                &[Key("name")],
                format!("name '{}' must be non-empty and use only letters, digits, '.', '_' and '-' (it names the run folder)", self.name),
            ));
        }
        match (&self.dataset, self.datasets.is_empty()) {
            (None, true) => {
                return Err(e(&[], "no dataset: set `dataset = \"file.safetensors\"` or a `[datasets]` table keyed by key-frame tag".into()))
            }
            (Some(_), false) => {
                return Err(e(&[Key("datasets")], "`dataset` and `[datasets]` are both set; use one of them".into()))
            }
            _ => {}
        }
        for tag in self.datasets.keys() {
            if !is_label_name(tag) {
                return Err(e(
                    &[Key("datasets"), Key(tag)],
                    format!(
                        "key-frame tag '{tag}' must use only letters, digits, '.', '_' and '-'"
                    ),
                ));
            }
        }
        if let Some(parts) = &self.parts {
            self.listed_once("parts", "part", parts, "use every part of the dataset")?;
            for (i, p) in parts.iter().enumerate() {
                if *p == Dataset::Smic && self.scheme != LabelScheme::Megc3 {
                    return Err(e(
                        &[Key("parts"), Index(i)],
                        format!("SMIC has no labels under scheme {} (only megc3: its classes are negative/positive/surprise)", self.scheme),
                    ));
                }
            }
        }
        if let Some(folds) = &self.folds {
            self.listed_once("folds", "fold", folds, "run every fold")?;
        }
        validate_train(self, &self.train)?;
        self.validate_sweep()?;
        self.validate_selection()?;
        if self.max_attempts == 0 {
            return Err(e(
                &[Key("max_attempts")],
                "max_attempts must be at least 1".into(),
            ));
        }
        if self.lease_seconds == 0 {
            return Err(e(
                &[Key("lease_seconds")],
                "lease_seconds must be at least 1".into(),
            ));
        }
        // A [slurm] table may sit in a spec run locally: `mer submit --slurm` uses it, `mer run` does not.
        if let Some(s) = &self.slurm {
            if self.launcher == LauncherKind::Kubernetes {
                return Err(e(
                    &[Key("slurm")],
                    "[slurm] is set but launcher is \"kubernetes\"; remove one".into(),
                ));
            }
            if let Err((field, why)) = s.check(self.train.devices_per_task) {
                return Err(e(&[Key("slurm"), Key(field)], why));
            }
        }
        match (self.launcher, &self.kubernetes) {
            (LauncherKind::Slurm, Some(_)) => {
                return Err(e(&[Key("kubernetes")], "[kubernetes] is set but launcher is \"slurm\"; remove one".into()))
            }
            (LauncherKind::Slurm, None) => {}
            (LauncherKind::Kubernetes, None) => {
                return Err(e(&[Key("launcher")], "launcher = \"kubernetes\" needs a [kubernetes] table (at least `image`)".into()))
            }
            (LauncherKind::Local, Some(_)) => {
                return Err(e(&[Key("kubernetes")], "[kubernetes] is set but launcher is \"local\"; set launcher = \"kubernetes\" or remove the table".into()))
            }
            (LauncherKind::Kubernetes, Some(k)) => {
                if k.image.trim().is_empty() {
                    return Err(e(&[Key("kubernetes"), Key("image")], "kubernetes.image is empty".into()));
                }
                if !is_dns_label(&k.namespace) {
                    return Err(e(&[Key("kubernetes"), Key("namespace")], format!("'{}' is not a valid namespace (lower-case letters, digits, '-', at most 63)", k.namespace)));
                }
                if k.workers == 0 {
                    return Err(e(&[Key("kubernetes"), Key("workers")], "kubernetes.workers must be at least 1".into()));
                }
                if k.slots_per_device == 0 {
                    return Err(e(&[Key("kubernetes"), Key("slots_per_device")], "kubernetes.slots_per_device must be at least 1".into()));
                }
                let need = self.train.devices_per_task;
                let has = k.gpus_per_worker.max(1) as usize;
                if need > has {
                    return Err(e(
                        &[Key("kubernetes"), Key("gpus_per_worker")],
                        format!(
                            "train.devices_per_task = {need} needs worker pods with at least {need} GPUs, but kubernetes.gpus_per_worker = {} gives each pod {has} device(s): no pod could ever run a task (set gpus_per_worker >= {need}, or lower devices_per_task)",
                            k.gpus_per_worker
                        ),
                    ));
                }
            }
            (LauncherKind::Local, None) => {}
        }
        Ok(())
    }

    /// The inner-fold count of nested selection (`None` without it).
    pub fn inner_folds(&self) -> Option<usize> {
        match self.selection.mode {
            SelectionMode::None => None,
            SelectionMode::Nested => {
                Some(self.selection.inner_folds.unwrap_or(DEFAULT_INNER_FOLDS))
            }
        }
    }

    /// The seed of the inner splits (`[selection] seed`, or `train.seed`).
    pub fn selection_seed(&self) -> u64 {
        self.selection.seed.unwrap_or(self.train.seed)
    }

    fn validate_selection(&self) -> Result<(), CoordError> {
        use PathSeg::Key;
        let sel = &self.selection;
        let at = |k: &'static str| [Key("selection"), Key(k)];
        match sel.mode {
            SelectionMode::None => {
                if sel.inner_folds.is_some() {
                    return Err(self.error(
                        &at("inner_folds"),
                        "selection.inner_folds applies only to mode = \"nested\"".to_string(),
                    ));
                }
                if sel.seed.is_some() {
                    return Err(self.error(
                        &at("seed"),
                        "selection.seed applies only to mode = \"nested\"".to_string(),
                    ));
                }
            }
            SelectionMode::Nested => {
                if self.protocol != Protocol::Loso {
                    return Err(self.error(&at("mode"), format!("nested selection splits the training subjects of a LOSO fold; it is not built for protocol = \"{}\" (use protocol = \"loso\", or leave [selection] out)", self.protocol.key())));
                }
                if self.inner_folds().is_some_and(|k| k < 2) {
                    return Err(self.error(&at("inner_folds"), "selection.inner_folds must be at least 2 (each inner split tests on 1/k of the outer fold's training subjects)".to_string()));
                }
            }
        }
        Ok(())
    }

    fn validate_sweep(&self) -> Result<(), CoordError> {
        use PathSeg::{Index, Key};
        let s = &self.sweep;
        let e = |path: &[PathSeg<'_>], m: String| self.error(path, m);
        let empty = |axis: &str| {
            e(
                &[Key("sweep"), Key(axis)],
                format!("sweep.{axis} is empty; leave the axis out to use the [train] value"),
            )
        };
        if s.alpha.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("alpha"));
        }
        if s.frozen_layers.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("frozen_layers"));
        }
        if s.loss.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("loss"));
        }
        if s.prior.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("prior"));
        }
        if s.keyframes.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("keyframes"));
        }
        if s.seeds.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("seeds"));
        }
        if s.method.as_ref().is_some_and(Vec::is_empty) {
            return Err(empty("method"));
        }
        let mut seen = BTreeSet::new();
        for (i, m) in s.method.iter().flatten().enumerate() {
            if !seen.insert(m.clone()) {
                return Err(e(
                    &[Key("sweep"), Key("method"), Index(i)],
                    format!("method '{m}' is listed twice"),
                ));
            }
        }
        self.validate_user_methods()?;
        for m in self.method_axis() {
            if let Some(settings) = self.methods.settings(&m) {
                if let Err(c) = settings.validate() {
                    let segs: Vec<&str> = c.field.split('.').collect();
                    let path: Vec<PathSeg<'_>> = segs.iter().map(|k| Key(k)).collect();
                    return Err(e(&path, c.message));
                }
            }
        }
        for (i, a) in s.alpha.iter().flatten().enumerate() {
            if !a.is_finite() || *a <= 0.0 {
                return Err(e(
                    &[Key("sweep"), Key("alpha"), Index(i)],
                    format!("focal alpha {a} must be a positive number"),
                ));
            }
        }
        if s.variant.as_ref().is_some_and(BTreeMap::is_empty) {
            return Err(e(
                &[Key("sweep"), Key("variant")],
                "sweep.variant is empty; leave the axis out to use [train] alone".into(),
            ));
        }
        for name in s.variant.iter().flat_map(BTreeMap::keys) {
            if !is_label_name(name) {
                return Err(e(
                    &[Key("sweep"), Key("variant"), Key(name)],
                    format!("variant name '{name}' must use only letters, digits, '.', '_' and '-' (it labels the sweep point)"),
                ));
            }
        }
        let variants = self.variants()?;
        for (name, train) in &variants {
            if let Some(name) = name {
                train.validate(self.scheme.num_classes()).map_err(|err| {
                    e(
                        &[Key("sweep"), Key("variant"), Key(name)],
                        format!("sweep.variant.{name}: {err}"),
                    )
                })?;
            }
            let layers = train.model.widths.len();
            for (i, k) in s.frozen_layers.iter().flatten().enumerate() {
                if *k > layers {
                    return Err(e(
                        &[Key("sweep"), Key("frozen_layers"), Index(i)],
                        format!("frozen_layers {k} is out of range: SinC3D has {layers} conv layers (0..={layers})"),
                    ));
                }
            }
        }
        let losses = self.losses();
        if s.alpha.is_some() && !losses.contains(&LossKind::Focal) {
            return Err(e(
                &[Key("sweep"), Key("alpha")],
                "sweep.alpha is set but the target loss is cross_entropy, which has no alpha; set the loss to focal or drop the alpha axis".into(),
            ));
        }
        let priors = self.priors();
        if !priors.contains(&true) {
            if let Some(k) = self.frozen().into_iter().find(|k| *k > 0) {
                let path: &[PathSeg<'_>] = if s.frozen_layers.is_some() {
                    &[Key("sweep"), Key("frozen_layers")]
                } else {
                    &[Key("train"), Key("target"), Key("frozen_layers")]
                };
                return Err(e(
                    path,
                    format!("frozen_layers = {k} without prior learning: frozen layers keep prior-learned weights, and prior learning is off (prior = false)"),
                ));
            }
        }
        if let Some(tags) = &s.keyframes {
            let mut seen = BTreeSet::new();
            for (i, t) in tags.iter().enumerate() {
                if !seen.insert(t) {
                    return Err(e(
                        &[Key("sweep"), Key("keyframes"), Index(i)],
                        format!("key-frame tag '{t}' is listed twice"),
                    ));
                }
                if self.dataset.is_none() && !self.datasets.contains_key(t) {
                    let known: Vec<&str> = self.datasets.keys().map(String::as_str).collect();
                    return Err(e(
                        &[Key("sweep"), Key("keyframes"), Index(i)],
                        format!(
                            "key-frame tag '{t}' has no prepared file in [datasets] (known: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
            if self.dataset.is_some() && tags.len() > 1 {
                return Err(e(
                    &[Key("sweep"), Key("keyframes")],
                    "one prepared file has one key-frame method; to sweep several, name one prepared file per tag in [datasets]".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `[train]` tables a variant replaces whole instead of merging into: choices whose fields depend on the
/// choice (`target.loss`: a focal loss's gamma and alpha mean nothing to cross-entropy).
const REPLACED_WHOLE: &[&[&str]] = &[&["target", "loss"]];

/// Merges `over` into `base` (at key path `path`): objects key by key, recursively, except the paths of
/// [`REPLACED_WHOLE`]; anything else replaces the base value.
fn merge_json(base: &mut serde_json::Value, over: serde_json::Value, path: &mut Vec<String>) {
    let whole = REPLACED_WHOLE
        .iter()
        .any(|p| p.len() == path.len() && p.iter().zip(path.iter()).all(|(a, b)| b.as_str() == *a));
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) if !whole => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => {
                        path.push(k);
                        merge_json(slot, v, path);
                        path.pop();
                    }
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A key-frame tag or variant name: non-empty, letters, digits, '.', '_' and '-' only (it goes into
/// labels and file names).
fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `s` is a DNS-1123 label: 1 to 63 characters of `[a-z0-9-]`, neither starting nor ending with
/// `-` (Kubernetes namespace and object names; the one rule the spec checks and the launcher uses).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks the ranges of a training configuration (dataset-independent): [`TrainConfig::validate`], with
/// the error placed at its field in the spec file.
fn validate_train(spec: &ExperimentSpec, t: &TrainConfig) -> Result<(), CoordError> {
    t.validate(spec.scheme.num_classes()).map_err(|err| {
        let mut p = vec![PathSeg::Key("train")];
        p.extend(err.field.split('.').map(PathSeg::Key));
        spec.error(&p, err.message)
    })
}

/// Parses and validates a spec; `file` names it in errors. Relative paths are kept as written.
pub fn parse_spec(file: &str, text: &str) -> Result<ExperimentSpec, CoordError> {
    let source = SpecSource {
        file: file.to_string(),
        text: text.to_string(),
    };
    reject_builtin_commands(&source)?;
    let mut spec: ExperimentSpec = toml::from_str(text).map_err(|err| {
        let (line, col) = err
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((0, 0));
        CoordError::Spec {
            file: file.to_string(),
            line,
            col,
            message: err.message().trim().to_string(),
        }
    })?;
    spec.source = Some(source);
    spec.validate()?;
    Ok(spec)
}

/// A `[methods.<built-in>]` table with a `command`: a method of one's own must not take a built-in's name
/// (the table would otherwise fail as an unknown field of the built-in's settings).
fn reject_builtin_commands(source: &SpecSource) -> Result<(), CoordError> {
    let Ok(root) = toml::de::DeTable::parse(&source.text) else {
        return Ok(()); // the parse proper reports it
    };
    let Some(methods) = root
        .get_ref()
        .get("methods")
        .and_then(|m| m.get_ref().as_table())
    else {
        return Ok(());
    };
    for m in Method::ALL {
        let has_command = methods
            .get(m.key())
            .and_then(|t| t.get_ref().as_table())
            .is_some_and(|t| t.get("command").is_some());
        if has_command {
            return Err(source.error(
                &[PathSeg::Key("methods"), PathSeg::Key(m.key()), PathSeg::Key("command")],
                format!("'{}' is a built-in method; give your own method another name ([methods.my_{}])", m.key(), m.key()),
            ));
        }
    }
    Ok(())
}

/// Reads, parses and validates a spec file; relative dataset paths are resolved against the spec's folder,
/// and the files of the spec's own methods are read and hashed.
pub fn load_spec(path: &Path) -> Result<ExperimentSpec, CoordError> {
    let text = std::fs::read_to_string(path).map_err(|e| CoordError::io(path, e))?;
    load_spec_text(path, &text)
}

/// [`load_spec`] of `text` standing for the file at `path` (relative paths resolve against it): a spec
/// that a command changed before submitting it (`mer submit --slurm` and its flags).
pub fn load_spec_text(path: &Path, text: &str) -> Result<ExperimentSpec, CoordError> {
    let mut spec = parse_spec(&path.display().to_string(), text)?;
    spec.resolve_relative_to(path);
    spec.resolve_method_files(path)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("ml-team"));
        assert!(!is_dns_label("Bad_NS"));
        assert!(!is_dns_label("-x"));
    }

    const MIN: &str = "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n";

    fn err(text: &str) -> String {
        parse_spec("s.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_spec_takes_paper_defaults() {
        let s = parse_spec("s.toml", MIN).unwrap();
        assert_eq!(s.train, TrainConfig::default());
        assert_eq!(s.launcher, LauncherKind::Local);
        assert_eq!(s.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(s.protocol, Protocol::Loso);
        assert_eq!(s.prior_scope, PriorScope::PerFold);
        assert_eq!(s.losses(), vec![LossKind::Focal]);
        assert_eq!(s.priors(), vec![true]);
    }

    #[test]
    fn unknown_fields_are_rejected_with_line_and_column() {
        let e = err(&format!("{MIN}[sweep]\nalpah = [1.0]\n"));
        assert!(e.starts_with("s.toml:5:1: "), "{e}");
        assert!(e.contains("alpah"), "{e}");
        let e = err(&format!("{MIN}[train.target]\nfrozen = 2\n"));
        assert!(e.starts_with("s.toml:5:1: ") && e.contains("frozen"), "{e}");
        let e = err(&format!("{MIN}colour = 1\n"));
        assert!(e.starts_with("s.toml:4:1: ") && e.contains("colour"), "{e}");
        let e = err("name = \"t\"\ndataset = \"d\"\nscheme = \"megc4\"\n");
        assert!(e.starts_with("s.toml:3:10: ") && e.contains("megc4"), "{e}");
        let e = err("name = \"t\"\nscheme = \"megc3\"\n[train\n");
        assert!(e.starts_with("s.toml:3:"), "{e}");
    }

    #[test]
    fn contradictions_are_errors_at_their_place() {
        let e = err(&format!(
            "{MIN}[sweep]\nprior = [false]\nfrozen_layers = [0, 2]\n"
        ));
        assert!(
            e.starts_with("s.toml:6:17: ") && e.contains("without prior learning"),
            "{e}"
        );
        let e = err(&format!(
            "{MIN}[train.prior]\nenabled = false\n[train.target]\nfrozen_layers = 1\n"
        ));
        assert!(
            e.starts_with("s.toml:7:17: ") && e.contains("without prior learning"),
            "{e}"
        );
        let e = err(&format!(
            "{MIN}[sweep]\nloss = [\"cross_entropy\"]\nalpha = [1, 2]\n"
        ));
        assert!(
            e.starts_with("s.toml:6:9: ") && e.contains("cross_entropy"),
            "{e}"
        );
        let e = err(&format!("{MIN}[sweep]\nalpha = []\n"));
        assert!(e.contains("s.toml:5:9: ") && e.contains("empty"), "{e}");
        let e = err(&format!("{MIN}[sweep]\nfrozen_layers = [1, 6]\n"));
        assert!(e.starts_with("s.toml:5:21: ") && e.contains("0..=5"), "{e}");
        let e = err(&format!("{MIN}[train.target]\nfrozen_layers = 9\n"));
        assert!(e.starts_with("s.toml:5:17: ") && e.contains("0..=5"), "{e}");
        let e = err("name = \"t\"\ndataset = \"d\"\nscheme = \"objective5\"\nparts = [\"casme2\", \"smic\"]\n");
        assert!(e.starts_with("s.toml:4:20: ") && e.contains("SMIC"), "{e}");
        let e = err(&format!("{MIN}parts = [\"samm\", \"samm\"]\n"));
        assert!(e.contains("twice"), "{e}");
        let e = err(&format!(
            "{MIN}[sweep]\nkeyframes = [\"adaptive\", \"tas\"]\n"
        ));
        assert!(e.contains("[datasets]"), "{e}");
        let e = err("name = \"t\"\nscheme = \"megc3\"\n[datasets]\nadaptive = \"a\"\n[sweep]\nkeyframes = [\"adaptive\", \"tim\"]\n");
        assert!(e.starts_with("s.toml:6:26: ") && e.contains("'tim'"), "{e}");
        let e = err("name = \"t\"\nscheme = \"megc3\"\n");
        assert!(e.contains("no dataset"), "{e}");
        let e = err(&format!("{MIN}launcher = \"kubernetes\"\n"));
        assert!(
            e.starts_with("s.toml:4:12: ") && e.contains("[kubernetes]"),
            "{e}"
        );
        let e = err(&format!(
            "{MIN}[train.target.loss]\nkind = \"focal\"\ngamma = 2.0\nalpha = [1.0, 2.0]\n"
        ));
        assert!(e.contains("3 classes"), "{e}");
        let e = err(&format!("{MIN}[train.target.optim]\nepochs = 0\n"));
        assert!(
            e.starts_with("s.toml:5:10: ") && e.contains("epochs"),
            "{e}"
        );
        let e = err("name = \"a b\"\ndataset = \"d\"\nscheme = \"megc3\"\n");
        assert!(e.starts_with("s.toml:1:8: "), "{e}");
        let e = err(&format!("{MIN}max_attempts = 0\n"));
        assert!(e.contains("max_attempts"), "{e}");
    }

    #[test]
    fn mixed_axes_are_not_contradictions() {
        // Without-prior points coexist with frozen > 0 when prior is swept over both values, and an alpha
        // sweep coexists with a cross-entropy point: expansion drops/collapses the irrelevant combinations.
        let s = parse_spec(
            "s.toml",
            &format!("{MIN}[sweep]\nprior = [true, false]\nfrozen_layers = [0, 1]\nloss = [\"focal\", \"cross_entropy\"]\nalpha = [1, 2]\n"),
        )
        .unwrap();
        assert_eq!(s.frozen(), vec![0, 1]);
    }

    #[test]
    fn devices_per_task_is_checked_against_the_pods_gpus() {
        let k8s = |gpus: u32, n: u32| {
            format!("{MIN}launcher = \"kubernetes\"\n[train]\ndevices_per_task = {n}\n[kubernetes]\nimage = \"mer:1\"\ngpus_per_worker = {gpus}\n")
        };
        assert!(parse_spec("s.toml", &k8s(2, 2)).is_ok());
        assert!(parse_spec("s.toml", &k8s(8, 4)).is_ok());
        let e = err(&k8s(1, 2));
        assert!(e.contains("kubernetes.gpus_per_worker = 1"), "{e}");
        assert!(e.contains("devices_per_task = 2"), "{e}");
        let e = err(&k8s(0, 2));
        assert!(e.contains("gives each pod 1 device(s)"), "{e}");
        let e = err(&format!("{MIN}[train]\ndevices_per_task = 0\n"));
        assert!(e.contains("devices_per_task = 0 must be between 1"), "{e}");
    }

    #[test]
    fn slurm_table_is_checked_and_where_workers_run_is_not_hashed() {
        let plain = parse_spec("s.toml", MIN).unwrap();
        let slurm = parse_spec(
            "s.toml",
            &format!(
                "{MIN}launcher = \"slurm\"\n[slurm]\npartition = \"gpu\"\ntime = \"02:00:00\"\n"
            ),
        )
        .unwrap();
        assert_eq!(
            slurm.slurm.as_ref().map(|s| s.time.as_str()),
            Some("02:00:00")
        );
        assert_eq!(plain.spec_hash(), slurm.spec_hash());
        // A local spec may carry the table (for `mer submit --slurm`); a Kubernetes one may not.
        assert!(parse_spec("s.toml", &format!("{MIN}[slurm]\nworkers = 4\n")).is_ok());
        let e = err(&format!("{MIN}[slurm]\ntime = \"soon\"\n"));
        assert!(
            e.starts_with("s.toml:5:") && e.contains("slurm.time"),
            "{e}"
        );
        let e = err(&format!("{MIN}[slurm]\nbogus = 1\n"));
        assert!(e.contains("bogus"), "{e}");
        let e = err(&format!("{MIN}launcher = \"slurm\"\n[train]\ndevices_per_task = 2\n[slurm]\ngpus_per_worker = 1\n"));
        assert!(e.contains("slurm.gpus_per_worker = 1"), "{e}");
    }

    #[test]
    fn kubernetes_launcher_is_parsed_and_checked() {
        let s = parse_spec("s.toml", &format!("{MIN}launcher = \"kubernetes\"\n[kubernetes]\nimage = \"mer:1\"\ngpus_per_worker = 1\n")).unwrap();
        assert_eq!(
            s.kubernetes.as_ref().map(|k| k.namespace.as_str()),
            Some("default")
        );
        let e = err(&format!("{MIN}launcher = \"kubernetes\"\n[kubernetes]\nimage = \"mer:1\"\nnamespace = \"Bad_NS\"\n"));
        assert!(e.starts_with("s.toml:7:13: "), "{e}");
    }

    #[test]
    fn load_resolves_relative_paths_against_the_spec_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exp.toml");
        std::fs::write(&p, MIN).unwrap();
        let s = load_spec(&p).unwrap();
        assert_eq!(s.dataset, Some(dir.path().join("d.safetensors")));
        let e = load_spec(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ä\nx", 3), (2, 1));
    }
}
