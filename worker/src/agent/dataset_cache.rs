//! The last prepared dataset a trainer loaded, kept in memory: consecutive tasks of an experiment share
//! it, and it can be hundreds of MB. Restricted to the task's parts, so that a CASME II-only experiment
//! never trains on the SAMM clips of a shared file.

use crate::agent::trainer::TrainerError;
use mer_shared::prepared::Prepared;
use mer_shared::Dataset;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file, the parts kept, and the data.
type Cached = (PathBuf, Vec<Dataset>, Arc<Prepared>);

/// A one-entry cache of prepared datasets.
#[derive(Default)]
pub struct DatasetCache(Mutex<Option<Cached>>);

impl DatasetCache {
    /// The prepared file at `path` restricted to `parts` (an empty list keeps every part): the cached
    /// copy when it is the same file and parts, else read (and cached in its place).
    pub fn get(&self, path: &Path, parts: &[Dataset]) -> Result<Arc<Prepared>, TrainerError> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| TrainerError::retryable("dataset cache poisoned"))?;
        if let Some((p, k, d)) = guard.as_ref() {
            if p == path && k == parts {
                return Ok(d.clone());
            }
        }
        // A dataset that does not parse will not parse on another attempt either.
        let full = Prepared::read(path).map_err(|e| TrainerError::fatal(e.to_string()))?;
        let d = Arc::new(if parts.is_empty() {
            full
        } else {
            full.select_parts(parts)
        });
        *guard = Some((path.to_path_buf(), parts.to_vec(), d.clone()));
        Ok(d)
    }
}
