//! The task folder of a user method (fold contract `mer-fold/1`, `docs/own-model.md`): `task.json`, the
//! training side with labels, the test side without them, the Python helper and the shipped files.
//!
//! What keeps the test labels out: the test side holds only the requested tensors, opaque sample ids
//! (`t0000`...) in a seeded shuffled order, and the subjects. Real clip names and their order can carry
//! the label (SMIC-HS names clips `s1_po_01`, and a sorted list groups them by emotion), and the
//! prepared file's other metadata (emotion, workbook row, source frame paths) carries it outright, so
//! none of it is written. The mapping from opaque id back to sample stays in the worker.

use crate::agent::trainer::TrainerError;
use crate::train::fold::Fold;
use mer_shared::labels::LabelScheme;
use mer_shared::prepared::Prepared;
use mer_shared::task::InnerSplit;
use mer_shared::user_method::{
    UserInput, UserMethodTask, CONTRACT_VERSION, EPOCH_PREDICTIONS_FILE, PREDICTIONS_FILE,
    TASK_FILE, TEST_FILE, TRAIN_FILE,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The Python helper of this contract version, written into every task folder as `mer_fold.py` unless
/// the method ships its own.
pub const HELPER_PY: &str = include_str!("../../../python/mer_fold.py");
/// The helper's file name in the task folder.
pub const HELPER_FILE: &str = "mer_fold.py";

/// One test sample as the worker knows it and the command does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSample {
    /// The opaque id the command sees.
    pub id: String,
    /// The sample's position in the prepared data.
    pub index: usize,
    /// Its true class (never written to the folder).
    pub label: usize,
}

/// What the task is, besides the method's settings: written to `task.json`.
#[derive(Debug, Clone)]
pub struct TaskContext<'a> {
    /// The task's derived seed.
    pub seed: u64,
    /// The slot's device(s), comma-separated (`cpu`, `cuda:1`, `cuda:0,cuda:1`).
    pub device: &'a str,
    /// `train.threads`.
    pub threads: Option<usize>,
    /// The label scheme.
    pub scheme: LabelScheme,
    /// The fold's name.
    pub fold: &'a str,
    /// Nested selection's inner split, if this is one.
    pub inner: Option<&'a InnerSplit>,
    /// Shipped files: path in the folder, local copy (already hash-checked where it was fetched).
    pub files: &'a [(String, PathBuf)],
}

/// Writes the task folder `dir` (which must exist and be empty) for `fold` of `data`; returns the test
/// samples in the order the command sees them.
pub fn write_folder(
    dir: &Path,
    data: &Prepared,
    fold: &Fold,
    task: &UserMethodTask,
    ctx: &TaskContext<'_>,
) -> Result<Vec<TestSample>, TrainerError> {
    let mut test: Vec<TestSample> = fold
        .test
        .iter()
        .zip(&fold.test_labels)
        .map(|(&index, &label)| TestSample {
            id: String::new(),
            index,
            label,
        })
        .collect();
    // The order is a seeded shuffle: the prepared file's order (by clip name) can group clips by label.
    test.shuffle(&mut ChaCha8Rng::seed_from_u64(
        ctx.seed ^ 0x6d65_722d_666f_6c64,
    ));
    for (i, t) in test.iter_mut().enumerate() {
        t.id = format!("t{i:04}");
    }
    let train_ids: Vec<String> = fold
        .train
        .iter()
        .map(|&i| data.samples[i].id.clone())
        .collect();
    let train_labels: Vec<i64> = fold.train_labels.iter().map(|&l| l as i64).collect();
    write_side(
        &dir.join(TRAIN_FILE),
        data,
        &fold.train,
        &train_ids,
        Some(&train_labels),
        &task.inputs,
    )?;
    let test_index: Vec<usize> = test.iter().map(|t| t.index).collect();
    let test_ids: Vec<String> = test.iter().map(|t| t.id.clone()).collect();
    write_side(
        &dir.join(TEST_FILE),
        data,
        &test_index,
        &test_ids,
        None,
        &task.inputs,
    )?;
    write_task_json(dir, task, ctx)?;
    copy_files(dir, task, ctx.files)?;
    if !task.files.iter().any(|f| f.path == HELPER_FILE) {
        write(&dir.join(HELPER_FILE), HELPER_PY.as_bytes())?;
    }
    Ok(test)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TrainerError> {
    std::fs::write(path, bytes)
        .map_err(|e| TrainerError::retryable(format!("writing {}: {e}", path.display())))
}

/// `task.json`: the contract version and what the command may know.
fn write_task_json(
    dir: &Path,
    task: &UserMethodTask,
    ctx: &TaskContext<'_>,
) -> Result<(), TrainerError> {
    let devices: Vec<&str> = ctx.device.split(',').map(str::trim).collect();
    let device = if devices.iter().any(|d| d.starts_with("cuda")) {
        "cuda"
    } else {
        "cpu"
    };
    let v = serde_json::json!({
        "contract": CONTRACT_VERSION,
        "method": task.name,
        "params": task.params,
        "seed": ctx.seed,
        "device": device,
        "devices": devices,
        "threads": ctx.threads,
        "scheme": ctx.scheme.key(),
        "classes": ctx.scheme.class_names(None),
        "fold": ctx.fold,
        "inner": ctx.inner.map(|i| serde_json::json!({"index": i.index, "of": i.of})),
        "inputs": task.inputs,
        "train": TRAIN_FILE,
        "test": TEST_FILE,
        "predictions": PREDICTIONS_FILE,
        "epoch_predictions": EPOCH_PREDICTIONS_FILE,
        "timeout_minutes": task.timeout_minutes,
    });
    let text = serde_json::to_string_pretty(&v)
        .map_err(|e| TrainerError::retryable(format!("encoding {TASK_FILE}: {e}")))?;
    write(&dir.join(TASK_FILE), text.as_bytes())
}

/// Copies the shipped files into the folder and checks each one's bytes against the hash the task names.
fn copy_files(
    dir: &Path,
    task: &UserMethodTask,
    local: &[(String, PathBuf)],
) -> Result<(), TrainerError> {
    for f in &task.files {
        let Some((_, src)) = local.iter().find(|(p, _)| *p == f.path) else {
            return Err(TrainerError::retryable(format!(
                "method {}: file {} (sha256 {}) was not fetched",
                task.name, f.path, f.sha256
            )));
        };
        let dst = dir.join(&f.path);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                TrainerError::retryable(format!("creating {}: {e}", parent.display()))
            })?;
        }
        std::fs::copy(src, &dst).map_err(|e| {
            TrainerError::retryable(format!(
                "copying {} to {}: {e}",
                src.display(),
                dst.display()
            ))
        })?;
        let sha = mer_shared::digest::sha256_file(&dst)
            .map_err(|e| TrainerError::retryable(e.to_string()))?;
        if sha != f.sha256 {
            return Err(TrainerError::fatal(format!(
                "method {}: file {} has sha256 {sha}, the task names {}: it changed after the spec was planned",
                task.name, f.path, f.sha256
            )));
        }
    }
    Ok(())
}

/// Writes one side of the fold: the requested tensors of samples `index` (in that order), the labels
/// when given, and the ids and subjects as metadata.
fn write_side(
    path: &Path,
    data: &Prepared,
    index: &[usize],
    ids: &[String],
    labels: Option<&[i64]>,
    inputs: &[UserInput],
) -> Result<(), TrainerError> {
    let n = index.len();
    let mut owned: Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for input in inputs {
        let missing = || {
            let g = input.group().map_or("", |g| g.prep_flag());
            TrainerError::fatal(format!(
                "input '{}' is not in the prepared file; prepare it again with `mer prep ... {g}`",
                input.key()
            ))
        };
        match input {
            UserInput::Flow => {
                let mut shape = data.shape.to_vec();
                shape[0] = n;
                let bytes = f32_le(index.iter().flat_map(|&i| data.sample_flow(i)));
                owned.push(("flow", Dtype::F32, shape, bytes));
            }
            UserInput::ApexFlow => {
                let a = data.info.apex_flow.as_ref().ok_or_else(missing)?;
                let s = a.size as usize;
                let rows = index
                    .iter()
                    .map(|&i| data.sample_apex_flow(i).ok_or_else(missing))
                    .collect::<Result<Vec<_>, _>>()?;
                let bytes = f32_le(rows.into_iter().flatten());
                owned.push(("apex_flow", Dtype::F32, vec![n, 3, s, s], bytes));
            }
            UserInput::Tim10 => {
                let t = data.info.tim10.as_ref().ok_or_else(missing)?;
                let g = t.size as usize;
                let mut bytes = Vec::with_capacity(n * t.frames as usize * g * g);
                for &i in index {
                    bytes.extend_from_slice(data.sample_tim10(i).ok_or_else(missing)?);
                }
                owned.push(("tim10", Dtype::U8, vec![n, t.frames as usize, g, g], bytes));
            }
        }
    }
    if let Some(l) = labels {
        let bytes: Vec<u8> = l.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push(("label", Dtype::I64, vec![n], bytes));
    }
    let subjects: Vec<String> = index.iter().map(|&i| data.samples[i].fold_key()).collect();
    let mut meta = HashMap::new();
    meta.insert("contract".to_string(), CONTRACT_VERSION.to_string());
    meta.insert("sample_ids".to_string(), json_list(ids));
    meta.insert("subjects".to_string(), json_list(&subjects));
    let input_names: Vec<&str> = inputs.iter().map(|i| i.key()).collect();
    meta.insert("inputs".to_string(), json_list(&input_names));
    let bad = |e: safetensors::SafeTensorError| {
        TrainerError::retryable(format!("writing {}: {e}", path.display()))
    };
    let mut views = Vec::with_capacity(owned.len());
    for (name, dtype, shape, bytes) in &owned {
        views.push((
            *name,
            TensorView::new(*dtype, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    let bytes = safetensors::serialize(views, Some(meta)).map_err(bad)?;
    let bytes = canonical_header(bytes)
        .map_err(|e| TrainerError::retryable(format!("writing {}: {e}", path.display())))?;
    write(path, &bytes)
}

/// The same safetensors bytes with the header's keys in sorted order. The crate writes the metadata
/// from a `HashMap`, whose order changes from run to run; a task folder must be the same bytes for the
/// same task (and its tests compare folders byte for byte). Reordering keys keeps the header's length,
/// so the padding and every data offset stay as they were.
fn canonical_header(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let n = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or("no header length")? as usize;
    let header = bytes.get(8..8 + n).ok_or("short header")?;
    // serde_json's maps are sorted by key.
    let v: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    if text.len() > n {
        return Err(format!("header grew from {n} to {} bytes", text.len()));
    }
    text.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&text);
    Ok(bytes)
}

/// Little-endian bytes of f32 values (safetensors' layout).
fn f32_le<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|x| x.to_le_bytes()).collect()
}

/// JSON text of a list of strings (safetensors metadata values are strings).
fn json_list<T: AsRef<str>>(v: &[T]) -> String {
    let v: Vec<&str> = v.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}
