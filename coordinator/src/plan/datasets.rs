//! What the planner reads of prepared files: their content hash and header (never the flow tensor).

use super::expand_multi;
use super::DatasetSummary;
use crate::error::CoordError;
use crate::spec::ExperimentSpec;
use mer_shared::digest::sha256_file;
use mer_shared::prepared::Prepared;
use std::collections::BTreeMap;
use std::path::Path;

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
