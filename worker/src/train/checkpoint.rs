//! safetensors files of the engine: per-epoch training checkpoints (resume after a kill) and the
//! prior-learning artifact that target-learning tasks start from.
//!
//! Tensors are stored fp32 in logical (contiguous NCDHW) layout, so files are independent of the fast path
//! and readable from Python (`safetensors.torch.load_file`). String metadata carries the format tag, a
//! fingerprint of everything the training depends on, and JSON details. Writes are atomic.

use crate::error::WorkerError;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

/// Format tag of per-epoch training checkpoints.
pub const CHECKPOINT_FORMAT: &str = "mer-checkpoint/1";
/// Format tag of prior-learning artifacts.
pub const PRIOR_FORMAT: &str = "mer-prior/1";

/// A file's tensors and metadata.
#[derive(Debug)]
pub struct TensorFile {
    /// Named fp32 CPU tensors.
    pub tensors: HashMap<String, Tensor>,
    /// String metadata.
    pub meta: BTreeMap<String, String>,
}

impl TensorFile {
    /// A metadata value, or an error naming the file and key.
    pub fn get(&self, path: &Path, key: &str) -> Result<&str, WorkerError> {
        self.meta
            .get(key)
            .map(|s| s.as_str())
            .ok_or_else(|| bad(path, format!("metadata has no '{key}'")))
    }
}

fn bad(path: &Path, message: String) -> WorkerError {
    WorkerError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes named tensors (converted to fp32 contiguous CPU) and metadata atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: &BTreeMap<String, String>,
) -> Result<(), WorkerError> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .detach()
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let vals: Vec<f32> = Vec::try_from(&t.flatten(0, -1))
            .map_err(|e| WorkerError::torch(format!("saving '{name}'"), e))?;
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        bufs.push((name.clone(), shape, bytes));
    }
    let views: Vec<(&str, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.as_str(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, e.to_string()))?;
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e.to_string()))?;
    mer_shared::fs::write_atomic(path, &data)?;
    Ok(())
}

/// Reads a file written by [`save`] and checks its format tag.
pub fn load(path: &Path, format: &str) -> Result<TensorFile, WorkerError> {
    let data = std::fs::read(path).map_err(|e| WorkerError::io(path, e))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&data)
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let meta: BTreeMap<String, String> = md
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    match meta.get("format") {
        Some(f) if f == format => {}
        other => return Err(bad(path, format!("format {other:?} is not {format}"))),
    }
    let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| bad(path, e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(
                path,
                format!("tensor '{name}' is {:?}, expected F32", view.dtype()),
            ));
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, Kind::Float)
            .map_err(|e| bad(path, format!("tensor '{name}': {e}")))?;
        tensors.insert(name, t);
    }
    Ok(TensorFile { tensors, meta })
}

/// Checks that `file` holds every name in `specs` with the given shape.
pub fn check_shapes(
    path: &Path,
    file: &TensorFile,
    specs: &[(String, Vec<i64>)],
) -> Result<(), WorkerError> {
    for (name, shape) in specs {
        match file.tensors.get(name) {
            None => return Err(bad(path, format!("tensor '{name}' is missing"))),
            Some(t) if &t.size() != shape => {
                return Err(bad(
                    path,
                    format!(
                        "tensor '{name}' has shape {:?}, the model needs {shape:?}",
                        t.size()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_metadata_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let a = Tensor::randn([2, 3, 1, 1, 2], (Kind::Float, tch::Device::Cpu));
        // A non-contiguous (channels-last) tensor is stored in logical layout.
        let cl = crate::train::precision::channels_last_3d(&a);
        let meta: BTreeMap<String, String> = [
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("epoch".into(), "3".into()),
        ]
        .into();
        save(
            &path,
            &[
                ("w".into(), cl),
                ("b".into(), Tensor::from_slice(&[1.0f32, 2.0])),
            ],
            &meta,
        )
        .unwrap();
        let f = load(&path, CHECKPOINT_FORMAT).unwrap();
        assert!(f.tensors["w"].equal(&a));
        assert_eq!(f.get(&path, "epoch").unwrap(), "3");
        assert!(f
            .get(&path, "nope")
            .unwrap_err()
            .to_string()
            .contains("nope"));
        check_shapes(&path, &f, &[("w".into(), vec![2, 3, 1, 1, 2])]).unwrap();
        let e = check_shapes(&path, &f, &[("w".into(), vec![2, 3])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.safetensors") && e.contains("'w'"), "{e}");
        assert!(load(&path, PRIOR_FORMAT)
            .unwrap_err()
            .to_string()
            .contains("mer-prior/1"));
        std::fs::write(&path, b"junk").unwrap();
        assert!(load(&path, CHECKPOINT_FORMAT).is_err());
    }
}
