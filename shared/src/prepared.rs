//! The prepared-dataset file: ONE safetensors file holding every sample's optical-flow tensor plus
//! per-sample metadata, written by `mer prep` and read by the training engine (and by Python's
//! `safetensors`/numpy).
//!
//! Layout (format `mer-prepared/1`):
//! - tensor `flow`: f32, shape `[N, C, T, H, W]` = samples x flow channels (u, v[, magnitude]) x 10 flow
//!   frames x height x width (112 x 112 by default). `flow[i]` is exactly the model input of sample `i`.
//! - `__metadata__` (string -> string):
//!   - `format`: `mer-prepared/1`
//!   - `prep`: JSON [`PrepInfo`] (key-frame method, interpolator, Farneback parameters, crop settings)
//!   - `samples`: JSON array of [`SampleMeta`], in tensor order.
//! - optional tensor groups for the baseline methods (`mer prep --apex-flow` / `--tim10`; recorded in
//!   [`PrepInfo::apex_flow`] / [`PrepInfo::tim10`]; files without them read exactly as before):
//!   - `apex_flow`: f32 `[N, 3, S, S]`: onset->apex flow u, v and its optical strain;
//!   - `tim10`: u8 `[N, 10, G, G]`: the gray face crop from onset to offset, TIM-interpolated to 10 frames.
//!
//! Writes are atomic (temporary file in the target folder, fsync, rename), so a reader never sees a
//! partial file under the final name.

use crate::dataset::Dataset;
use crate::error::SharedError;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The format tag stored in the file's metadata.
pub const FORMAT: &str = "mer-prepared/1";
/// Name of the flow tensor.
pub const FLOW_TENSOR: &str = "flow";
/// Name of the optional onset->apex flow + strain tensor (the group [`crate::method::InputGroup::ApexFlow`]).
pub const APEX_FLOW_TENSOR: &str = "apex_flow";
/// Name of the optional TIM-10 gray-frame tensor (the group [`crate::method::InputGroup::Tim10`]).
pub const TIM10_TENSOR: &str = "tim10";

/// How a prepared file was made; recorded with every result that uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepInfo {
    /// Key-frame construction: `adaptive`, `tas` or `tim`.
    pub keyframes: String,
    /// The frame interpolator used by `adaptive`/`tim` (e.g. `farneback-warp-blend`, or a model file hash).
    pub interpolator: String,
    /// Farneback parameters, as OpenCV names them.
    pub flow_params: BTreeMap<String, f64>,
    /// Output size (pixels, square).
    pub size: u32,
    /// Number of flow frames (10).
    pub frames: u32,
    /// Flow channels stored: `["u","v"]` or `["u","v","magnitude"]`.
    pub channels: Vec<String>,
    /// Face-crop method (`haar-eyes`, `haar`, `full-frame` fallback...).
    pub crop: String,
    /// `mer` version that wrote the file.
    pub mer_version: String,
    /// How the adaptive plan filled the key-frames that bisection could not make (adaptive and TAS files;
    /// absent for TIM). Absent in files written before the rule was recorded: those used
    /// [`KeyframeFill::WidestGap`], see [`PrepInfo::keyframe_fill_rule`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframe_fill: Option<KeyframeFill>,
    /// How the optional `apex_flow` tensor was made (absent: the file has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex_flow: Option<ApexFlowInfo>,
    /// How the optional `tim10` tensor was made (absent: the file has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tim10: Option<Tim10Info>,
}

/// The onset->apex flow group: Farneback flow from the onset to the apex face crop at the file's `size`
/// (same parameters as the key-frame flows), optical strain from its spatial derivatives, then all three
/// area-resized to `size` x `size` (u and v scaled by the resize factor, so they stay in output pixels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApexFlowInfo {
    /// Side of the square (STSTNet and OFF-ApexNet: 28).
    pub size: u32,
    /// Channel names, in tensor order: `u`, `v`, `strain`.
    pub channels: Vec<String>,
}

/// The TIM-10 gray-frame group: every frame from onset to offset, face-cropped at `size`, resampled to
/// `frames` frames by the temporal interpolation model, stored as 8-bit gray.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tim10Info {
    /// Side of the square.
    pub size: u32,
    /// Frames (10).
    pub frames: u32,
}

impl PrepInfo {
    /// Whether the file holds an optional tensor group.
    pub fn has_group(&self, g: crate::method::InputGroup) -> bool {
        match g {
            crate::method::InputGroup::ApexFlow => self.apex_flow.is_some(),
            crate::method::InputGroup::Tim10 => self.tim10.is_some(),
        }
    }
}

/// The optional tensor groups of a prepared file, in memory (row-major, in sample order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Groups {
    /// `[N, 3, S, S]` onset->apex u, v, strain ([`PrepInfo::apex_flow`] says S).
    pub apex_flow: Option<Vec<f32>>,
    /// `[N, T, G, G]` TIM-10 gray frames ([`PrepInfo::tim10`] says T and G).
    pub tim10: Option<Vec<u8>>,
}

impl PrepInfo {
    /// The fill rule the file's adaptive/TAS key-frame times were made with; `None` for TIM, whose times
    /// do not come from the adaptive plan. Files that predate the field used the widest-gap fill, the only
    /// rule `mer` had then.
    pub fn keyframe_fill_rule(&self) -> Option<KeyframeFill> {
        if self.keyframes.split('-').next() == Some("tim") {
            return None;
        }
        Some(self.keyframe_fill.unwrap_or(KeyframeFill::WidestGap))
    }
}

/// How the adaptive key-frame plan (paper Algorithm 1) fills the frames that bisection towards the
/// onset or the offset could not make; the construction itself is `mer_worker::prep::keyframes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum KeyframeFill {
    /// Algorithm 1 as printed (lines 13-21): one pass over each side's generated frames in the order they
    /// were made, adding the floor midpoint of each consecutive pair that lies more than one frame from
    /// the earlier-made one, until the side has its count; then padding with the offset frame. Nothing is
    /// ever added between the apex and its nearest generated frame.
    #[default]
    #[serde(rename = "algorithm1")]
    Algorithm1,
    /// The rule `mer` used before prepared files recorded their fill: the widest gap between consecutive key-frame times
    /// (earliest on ties) gets its floor midpoint, repeatedly. It tends to put frames next to the apex,
    /// which weakens the flow into and out of it; kept to measure that difference.
    #[serde(rename = "widest-gap")]
    WidestGap,
}

impl KeyframeFill {
    /// The name used on the command line (`mer prep --keyframe-fill`) and in the prepared file.
    pub fn key(self) -> &'static str {
        match self {
            KeyframeFill::Algorithm1 => "algorithm1",
            KeyframeFill::WidestGap => "widest-gap",
        }
    }

    /// Every rule, for help texts and errors.
    pub const ALL: [KeyframeFill; 2] = [KeyframeFill::Algorithm1, KeyframeFill::WidestGap];
}

impl std::fmt::Display for KeyframeFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for KeyframeFill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        KeyframeFill::ALL
            .into_iter()
            .find(|f| f.key() == t)
            .ok_or_else(|| format!("'{s}' is not a key-frame fill rule (algorithm1 or widest-gap)"))
    }
}

/// Everything known about one prepared sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleMeta {
    /// Unique id `dataset/subject/filename`, e.g. `casme2/sub01/EP02_01f`.
    pub id: String,
    /// Dataset part.
    pub dataset: Dataset,
    /// Subject as the composite list writes it (`sub01`, `s01`, `6`).
    pub subject: String,
    /// Clip name as the dataset writes it.
    pub filename: String,
    /// Annotated emotion, verbatim.
    pub emotion: String,
    /// Objective class 1..7 where the dataset has one.
    pub objective_class: Option<u32>,
    /// Class index under each label scheme that includes this clip (`megc3`, `objective5`, `emotion5`).
    pub labels: BTreeMap<String, usize>,
    /// Onset frame number.
    pub onset: u32,
    /// Apex frame number.
    pub apex: u32,
    /// Offset frame number.
    pub offset: u32,
    /// True when the apex was not annotated but estimated (SMIC: middle frame).
    pub apex_estimated: bool,
    /// The 11 key-frame times (frame numbers; fractional where TIM interpolates).
    pub keyframe_times: Vec<f64>,
    /// Source frame files the key-frames were built from, relative to the dataset root.
    pub source_frames: Vec<String>,
    /// Face box in source pixels: x, y, width, height.
    pub crop_box: [i32; 4],
    /// Annotation corrections applied to this clip (from the corrections file), human-readable.
    pub corrections: Vec<String>,
}

impl SampleMeta {
    /// The index of the key-frame nearest the apex frame (the first on a tie), at least 1: the prepared
    /// flows `0..k` lead from the first key-frame to it, so their sum is the key-frame approximation of the
    /// onset->apex motion. `None` when fewer than two key-frame times are recorded.
    pub fn apex_keyframe(&self) -> Option<usize> {
        if self.keyframe_times.len() < 2 {
            return None;
        }
        let apex = f64::from(self.apex);
        let nearest = self
            .keyframe_times
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| (*a - apex).abs().total_cmp(&(*b - apex).abs()))
            .map_or(1, |(i, _)| i);
        Some(nearest.max(1))
    }

    /// The LOSO fold this sample is tested in (its subject's).
    pub fn fold_id(&self) -> crate::fold_id::FoldId {
        crate::fold_id::FoldId::new(self.dataset, self.subject.clone())
    }

    /// `dataset/subject`, the LOSO fold key of this sample ([`Self::fold_id`] as written).
    pub fn fold_key(&self) -> String {
        self.fold_id().to_string()
    }
}

/// A prepared dataset in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// How it was made.
    pub info: PrepInfo,
    /// Per-sample metadata, in tensor order.
    pub samples: Vec<SampleMeta>,
    /// Shape `[N, C, T, H, W]`.
    pub shape: [usize; 5],
    /// The flow tensor, row-major.
    pub flow: Vec<f32>,
    /// The optional tensor groups (empty unless `info` records them).
    pub groups: Groups,
}

impl Prepared {
    /// Number of f32 values per sample.
    pub fn sample_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The flow values of sample `i` (`[C, T, H, W]`).
    pub fn sample_flow(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.flow[i * n..(i + 1) * n]
    }

    /// Values per sample of the `apex_flow` group (0 when the file has none).
    pub fn apex_flow_len(&self) -> usize {
        self.info
            .apex_flow
            .as_ref()
            .map_or(0, |a| 3 * (a.size as usize).pow(2))
    }

    /// Sample `i`'s onset->apex u, v, strain (`[3, S, S]`), when the file has the group.
    pub fn sample_apex_flow(&self, i: usize) -> Option<&[f32]> {
        let n = self.apex_flow_len();
        self.groups
            .apex_flow
            .as_ref()
            .map(|v| &v[i * n..(i + 1) * n])
    }

    /// Values per sample of the `tim10` group (0 when the file has none).
    pub fn tim10_len(&self) -> usize {
        self.info
            .tim10
            .as_ref()
            .map_or(0, |t| t.frames as usize * (t.size as usize).pow(2))
    }

    /// Sample `i`'s TIM-10 gray frames (`[T, G, G]`), when the file has the group.
    pub fn sample_tim10(&self, i: usize) -> Option<&[u8]> {
        let n = self.tim10_len();
        self.groups.tim10.as_ref().map(|v| &v[i * n..(i + 1) * n])
    }

    /// A copy holding only the samples of `parts` (in the original order), e.g. to train a fold of a
    /// spec whose `parts` leave some of the file's datasets out.
    pub fn select_parts(&self, parts: &[Dataset]) -> Prepared {
        let n = self.sample_len();
        let keep: Vec<usize> = (0..self.samples.len())
            .filter(|&i| parts.contains(&self.samples[i].dataset))
            .collect();
        let mut flow = Vec::with_capacity(keep.len() * n);
        for &i in &keep {
            flow.extend_from_slice(self.sample_flow(i));
        }
        let mut shape = self.shape;
        shape[0] = keep.len();
        let groups = Groups {
            apex_flow: self.groups.apex_flow.as_ref().map(|_| {
                keep.iter()
                    .flat_map(|&i| self.sample_apex_flow(i).unwrap_or_default())
                    .copied()
                    .collect()
            }),
            tim10: self.groups.tim10.as_ref().map(|_| {
                keep.iter()
                    .flat_map(|&i| self.sample_tim10(i).unwrap_or_default())
                    .copied()
                    .collect()
            }),
        };
        Prepared {
            info: self.info.clone(),
            samples: keep.iter().map(|&i| self.samples[i].clone()).collect(),
            shape,
            flow,
            groups,
        }
    }

    /// Checks internal consistency (shape vs. data vs. metadata, unique ids).
    pub fn validate(&self, path: &Path) -> Result<(), SharedError> {
        let bad = |m: String| SharedError::Prepared {
            path: path.to_path_buf(),
            message: m,
        };
        if self.shape[0] != self.samples.len() {
            return Err(bad(format!(
                "tensor has {} samples, metadata {}",
                self.shape[0],
                self.samples.len()
            )));
        }
        if self.shape.iter().product::<usize>() != self.flow.len() {
            return Err(bad(format!(
                "shape {:?} does not match {} values",
                self.shape,
                self.flow.len()
            )));
        }
        if self.shape[1] != self.info.channels.len() || self.shape[2] != self.info.frames as usize {
            return Err(bad(format!(
                "shape {:?} disagrees with prep info channels/frames",
                self.shape
            )));
        }
        let n = self.samples.len();
        check_group(
            APEX_FLOW_TENSOR,
            self.info.apex_flow.is_some(),
            self.groups.apex_flow.as_ref().map(Vec::len),
            n * self.apex_flow_len(),
        )
        .map_err(bad)?;
        check_group(
            TIM10_TENSOR,
            self.info.tim10.is_some(),
            self.groups.tim10.as_ref().map(Vec::len),
            n * self.tim10_len(),
        )
        .map_err(bad)?;
        let mut seen = std::collections::HashSet::new();
        for s in &self.samples {
            if !seen.insert(&s.id) {
                return Err(bad(format!("duplicate sample id '{}'", s.id)));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (temp file + fsync + rename in the same folder).
    pub fn write(&self, path: &Path) -> Result<(), SharedError> {
        self.validate(path)?;
        let bytes: &[u8] = f32_bytes(&self.flow);
        let view = TensorView::new(Dtype::F32, self.shape.to_vec(), bytes).map_err(|e| {
            SharedError::Prepared {
                path: path.into(),
                message: e.to_string(),
            }
        })?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("prep".to_string(), json(&self.info));
        meta.insert("samples".to_string(), json(&self.samples));
        let tensor_err = |e: safetensors::SafeTensorError| SharedError::Prepared {
            path: path.into(),
            message: e.to_string(),
        };
        let mut tensors = vec![(FLOW_TENSOR, view)];
        let n = self.samples.len();
        if let (Some(a), Some(v)) = (&self.info.apex_flow, &self.groups.apex_flow) {
            let s = a.size as usize;
            tensors.push((
                APEX_FLOW_TENSOR,
                TensorView::new(Dtype::F32, vec![n, 3, s, s], f32_bytes(v)).map_err(tensor_err)?,
            ));
        }
        if let (Some(t), Some(v)) = (&self.info.tim10, &self.groups.tim10) {
            let g = t.size as usize;
            tensors.push((
                TIM10_TENSOR,
                TensorView::new(Dtype::U8, vec![n, t.frames as usize, g, g], v)
                    .map_err(tensor_err)?,
            ));
        }
        let data = safetensors::serialize(tensors, Some(meta)).map_err(tensor_err)?;
        crate::fs::write_atomic(path, &data)
    }

    /// Reads and validates a prepared file.
    pub fn read(path: &Path) -> Result<Self, SharedError> {
        let data = std::fs::read(path).map_err(|e| SharedError::io(path, e))?;
        let bad = |m: String| SharedError::Prepared {
            path: path.to_path_buf(),
            message: m,
        };
        let (_, md) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = md
            .metadata()
            .clone()
            .ok_or_else(|| bad("no __metadata__".into()))?;
        let (info, samples) = decode_metadata(|k| meta.get(k).map(String::as_str), &bad)?;
        let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
        let t = st
            .tensor(FLOW_TENSOR)
            .map_err(|e| bad(format!("tensor '{FLOW_TENSOR}': {e}")))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 5 {
            return Err(bad(format!(
                "tensor '{FLOW_TENSOR}' must be f32 [N,C,T,H,W], is {:?} {:?}",
                t.dtype(),
                t.shape()
            )));
        }
        let shape = [
            t.shape()[0],
            t.shape()[1],
            t.shape()[2],
            t.shape()[3],
            t.shape()[4],
        ];
        let flow: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut groups = Groups::default();
        if info.apex_flow.is_some() {
            let t = st
                .tensor(APEX_FLOW_TENSOR)
                .map_err(|e| bad(format!("tensor '{APEX_FLOW_TENSOR}': {e}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor '{APEX_FLOW_TENSOR}' must be f32")));
            }
            groups.apex_flow = Some(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
        }
        if info.tim10.is_some() {
            let t = st
                .tensor(TIM10_TENSOR)
                .map_err(|e| bad(format!("tensor '{TIM10_TENSOR}': {e}")))?;
            if t.dtype() != Dtype::U8 {
                return Err(bad(format!("tensor '{TIM10_TENSOR}' must be u8")));
            }
            groups.tim10 = Some(t.data().to_vec());
        }
        let p = Prepared {
            info,
            samples,
            shape,
            flow,
            groups,
        };
        p.validate(path)?;
        Ok(p)
    }
}

/// Checks that an optional group is recorded in the prep info exactly when its tensor is present, with
/// `expected` values.
fn check_group(
    name: &str,
    recorded: bool,
    values: Option<usize>,
    expected: usize,
) -> Result<(), String> {
    match (recorded, values) {
        (false, None) => Ok(()),
        (true, Some(v)) if v == expected => Ok(()),
        (true, Some(v)) => Err(format!(
            "tensor '{name}' has {v} values, {expected} expected"
        )),
        (true, None) => Err(format!(
            "prep info records a '{name}' group, the file has no such tensor"
        )),
        (false, Some(_)) => Err(format!(
            "the file has a '{name}' tensor its prep info does not record"
        )),
    }
}

/// Checks the format tag of a prepared file's safetensors metadata (looked up by `get`) and decodes
/// its `prep` and `samples` entries; `bad` turns a message into the error naming the file.
fn decode_metadata<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    bad: &dyn Fn(String) -> SharedError,
) -> Result<(PrepInfo, Vec<SampleMeta>), SharedError> {
    let entry = |k: &str| get(k).ok_or_else(|| bad(format!("metadata has no '{k}'")));
    let format = entry("format")?;
    if format != FORMAT {
        return Err(bad(format!("format '{format}' is not {FORMAT}")));
    }
    let info: PrepInfo =
        serde_json::from_str(entry("prep")?).map_err(|e| bad(format!("metadata 'prep': {e}")))?;
    let samples: Vec<SampleMeta> = serde_json::from_str(entry("samples")?)
        .map_err(|e| bad(format!("metadata 'samples': {e}")))?;
    Ok((info, samples))
}

/// The metadata of a prepared file without its flow tensor (see [`Prepared::read_meta`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMeta {
    /// How it was made.
    pub info: PrepInfo,
    /// Per-sample metadata, in tensor order.
    pub samples: Vec<SampleMeta>,
    /// Shape of the flow tensor `[N, C, T, H, W]`.
    pub shape: [usize; 5],
}

impl Prepared {
    /// Reads only the safetensors header (8-byte length + JSON) of a prepared file: its [`PrepInfo`],
    /// sample metadata and tensor shape, without loading the flow tensor. Checks the format tag, that the
    /// file is as long as the header says, and that the tensor's sample count matches the metadata.
    pub fn read_meta(path: &Path) -> Result<PreparedMeta, SharedError> {
        use std::io::Read;
        let bad = |m: String| SharedError::Prepared {
            path: path.to_path_buf(),
            message: m,
        };
        let mut f = std::fs::File::open(path).map_err(|e| SharedError::io(path, e))?;
        let file_len = f.metadata().map_err(|e| SharedError::io(path, e))?.len();
        let mut len8 = [0u8; 8];
        f.read_exact(&mut len8)
            .map_err(|_| bad("not a safetensors file: shorter than 8 bytes".into()))?;
        let n = u64::from_le_bytes(len8);
        if n == 0 || n > 100_000_000 || 8 + n > file_len {
            return Err(bad(format!(
                "not a safetensors file: header length {n} does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header)
            .map_err(|e| SharedError::io(path, e))?;
        let v: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("not a safetensors file: header is not JSON: {e}")))?;
        let meta = v
            .get("__metadata__")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no __metadata__".into()))?;
        let (info, samples) = decode_metadata(|k| meta.get(k).and_then(|x| x.as_str()), &bad)?;
        let t = v
            .get(FLOW_TENSOR)
            .ok_or_else(|| bad(format!("no tensor '{FLOW_TENSOR}'")))?;
        let dims: Vec<usize> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        if t.get("dtype").and_then(|d| d.as_str()) != Some("F32") || dims.len() != 5 {
            return Err(bad(format!(
                "tensor '{FLOW_TENSOR}' must be f32 [N,C,T,H,W], header says {t}"
            )));
        }
        let span = |t: &serde_json::Value| {
            t.get("data_offsets")
                .and_then(|o| o.as_array())
                .map(|o| {
                    (
                        o.first().and_then(|x| x.as_u64()).unwrap_or(0),
                        o.get(1).and_then(|x| x.as_u64()).unwrap_or(0),
                    )
                })
                .unwrap_or((0, 0))
        };
        let (start, stop) = span(t);
        // The optional groups' tensors may lie after the flow tensor: the file ends with the last one.
        let end = v
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str() != "__metadata__")
                    .map(|(_, t)| span(t).1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let expect = dims.iter().product::<usize>() as u64 * 4;
        if stop - start.min(stop) != expect || 8 + n + end != file_len {
            return Err(bad(format!(
                "file is {file_len} bytes, header promises {} (truncated or corrupt)",
                8 + n + end
            )));
        }
        for (name, recorded) in [
            (APEX_FLOW_TENSOR, info.apex_flow.is_some()),
            (TIM10_TENSOR, info.tim10.is_some()),
        ] {
            if recorded && v.get(name).is_none() {
                return Err(bad(format!(
                    "prep info records a '{name}' group, the file has no such tensor"
                )));
            }
        }
        let shape = [dims[0], dims[1], dims[2], dims[3], dims[4]];
        if shape[0] != samples.len() {
            return Err(bad(format!(
                "tensor has {} samples, metadata {}",
                shape[0],
                samples.len()
            )));
        }
        Ok(PreparedMeta {
            info,
            samples,
            shape,
        })
    }
}

fn json<T: Serialize>(v: &T) -> String {
    // Serialising plain data structs to JSON cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the slice covers exactly v's memory.
    // The target is little-endian x86_64/aarch64, matching safetensors' little-endian layout.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> SampleMeta {
        SampleMeta {
            emotion: "happiness".into(),
            objective_class: Some(1),
            onset: 25,
            apex: 91,
            offset: 121,
            keyframe_times: vec![25.0; 11],
            source_frames: vec!["img25.jpg".into()],
            crop_box: [0, 0, 10, 10],
            ..crate::fixtures::sample(
                Dataset::Casme2,
                "sub01",
                &format!("EP{i:02}"),
                &[("megc3", 1)],
            )
        }
    }

    fn info() -> PrepInfo {
        PrepInfo {
            interpolator: "farneback-warp-blend".into(),
            crop: "haar".into(),
            ..crate::fixtures::prep_info("test", 4, 10)
        }
    }

    #[test]
    fn apex_keyframe_is_the_nearest_key_frame_and_at_least_one() {
        let at = |times: &[f64], apex: u32| {
            SampleMeta {
                apex,
                keyframe_times: times.to_vec(),
                ..sample(1)
            }
            .apex_keyframe()
        };
        // The paper's worked example: onset 25, apex 91, offset 121.
        let worked = [
            25.0, 58.0, 75.0, 83.0, 87.0, 91.0, 106.0, 114.0, 118.0, 120.0, 121.0,
        ];
        assert_eq!(at(&worked, 91), Some(5));
        // A noisy apex between two key-frames goes to the nearer one; a tie to the earlier.
        assert_eq!(at(&worked, 97), Some(5));
        assert_eq!(at(&worked, 99), Some(6));
        assert_eq!(at(&[0.0, 2.0, 4.0], 3), Some(1));
        // An apex at the onset still sums one flow; fewer than two times have no apex key-frame.
        assert_eq!(at(&worked, 25), Some(1));
        assert_eq!(at(&[25.0], 25), None);
        assert_eq!(at(&[], 25), None);
    }

    #[test]
    fn keyframe_fill_is_recorded_and_older_files_read_as_widest_gap() {
        let i = info();
        let json = serde_json::to_string(&i).unwrap();
        assert!(json.contains(r#""keyframe_fill":"algorithm1""#), "{json}");
        assert_eq!(serde_json::from_str::<PrepInfo>(&json).unwrap(), i);
        // A file written before the field existed: no `keyframe_fill`, made with the widest-gap fill.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("keyframe_fill");
        let old: PrepInfo = serde_json::from_value(old).unwrap();
        assert_eq!(old.keyframe_fill, None);
        assert_eq!(old.keyframe_fill_rule(), Some(KeyframeFill::WidestGap));
        let tim = PrepInfo {
            keyframes: "tim".into(),
            keyframe_fill: None,
            ..info()
        };
        assert_eq!(tim.keyframe_fill_rule(), None);
        assert_eq!(
            "widest-gap".parse::<KeyframeFill>(),
            Ok(KeyframeFill::WidestGap)
        );
        assert_eq!(
            " Algorithm1".parse::<KeyframeFill>(),
            Ok(KeyframeFill::Algorithm1)
        );
        assert!("widest"
            .parse::<KeyframeFill>()
            .unwrap_err()
            .contains("'widest'"));
    }

    #[test]
    fn round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let n = 2 * 2 * 10 * 4 * 4;
        let p = Prepared {
            info: info(),
            samples: vec![sample(1), sample(2)],
            shape: [2, 2, 10, 4, 4],
            flow: (0..n).map(|x| x as f32).collect(),
            groups: Default::default(),
        };
        p.write(&path).unwrap();
        let q = Prepared::read(&path).unwrap();
        assert_eq!(p, q);
        assert_eq!(q.sample_flow(1)[0], (n / 2) as f32);
        // Only the final file remains.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn optional_groups_round_trip_select_with_their_samples_and_must_match_the_info() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.safetensors");
        let n = 2 * 2 * 10 * 4 * 4;
        let mut i = info();
        i.apex_flow = Some(ApexFlowInfo {
            size: 3,
            channels: vec!["u".into(), "v".into(), "strain".into()],
        });
        i.tim10 = Some(Tim10Info {
            size: 2,
            frames: 10,
        });
        let mut second = sample(2);
        second.dataset = Dataset::Samm;
        second.id = "samm/006/006_1_2".into();
        let p = Prepared {
            info: i,
            samples: vec![sample(1), second],
            shape: [2, 2, 10, 4, 4],
            flow: vec![0.25; n],
            groups: Groups {
                apex_flow: Some((0..2 * 27).map(|x| x as f32).collect()),
                tim10: Some((0..2 * 40).map(|x| x as u8).collect()),
            },
        };
        p.write(&path).unwrap();
        let q = Prepared::read(&path).unwrap();
        assert_eq!(p, q);
        assert_eq!(q.sample_apex_flow(1).unwrap()[0], 27.0);
        assert_eq!(q.sample_tim10(1).unwrap()[0], 40);
        let meta = Prepared::read_meta(&path).unwrap();
        assert_eq!(meta.info, p.info);
        // Selecting parts keeps each sample's group values with it.
        let s = q.select_parts(&[Dataset::Samm]);
        assert_eq!(s.groups.apex_flow.as_ref().unwrap()[0], 27.0);
        assert_eq!(s.sample_tim10(0).unwrap().len(), 40);
        // A tensor the info does not record, or a recorded group without (enough) values, is refused.
        let mut bad = p.clone();
        bad.info.tim10 = None;
        let e = bad.write(&path).unwrap_err().to_string();
        assert!(
            e.contains("'tim10' tensor its prep info does not record"),
            "{e}"
        );
        let mut bad = p.clone();
        bad.groups.apex_flow = Some(vec![0.0; 5]);
        let e = bad.write(&path).unwrap_err().to_string();
        assert!(e.contains("'apex_flow' has 5 values, 54 expected"), "{e}");
    }

    #[test]
    fn read_meta_reads_only_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let n = 2 * 2 * 10 * 4 * 4;
        let p = Prepared {
            info: info(),
            samples: vec![sample(1), sample(2)],
            shape: [2, 2, 10, 4, 4],
            flow: vec![0.5; n],
            groups: Default::default(),
        };
        p.write(&path).unwrap();
        let m = Prepared::read_meta(&path).unwrap();
        assert_eq!(
            (m.info, m.samples, m.shape),
            (p.info.clone(), p.samples.clone(), p.shape)
        );
        // A truncated file is refused.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(Prepared::read_meta(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&path, b"xx").unwrap();
        assert!(Prepared::read_meta(&path).is_err());
    }

    #[test]
    fn a_foreign_or_incomplete_header_is_refused_by_both_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let flow = [0u8; 4];
        let view = TensorView::new(Dtype::F32, vec![1, 1, 1, 1, 1], &flow).unwrap();
        let write = |meta: &[(&str, &str)]| {
            let meta: HashMap<String, String> = meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let bytes = safetensors::serialize([(FLOW_TENSOR, view.clone())], Some(meta)).unwrap();
            std::fs::write(&path, bytes).unwrap();
        };
        let both = || {
            let a = Prepared::read(&path).unwrap_err().to_string();
            let b = Prepared::read_meta(&path).unwrap_err().to_string();
            assert!(
                a.contains("p.safetensors") && b.contains("p.safetensors"),
                "{a} | {b}"
            );
            (a, b)
        };
        write(&[("format", "other/1")]);
        let (a, b) = both();
        assert!(a.contains("format 'other/1' is not") && b.contains("format 'other/1' is not"));
        write(&[("format", FORMAT), ("prep", &json(&info()))]);
        let (a, b) = both();
        assert!(
            a.contains("no 'samples'") && b.contains("no 'samples'"),
            "{a} | {b}"
        );
        write(&[
            ("format", FORMAT),
            ("prep", &json(&info())),
            ("samples", "[{}]"),
        ]);
        let (a, b) = both();
        assert!(
            a.contains("metadata 'samples'") && b.contains("metadata 'samples'"),
            "{a} | {b}"
        );
    }

    #[test]
    fn select_parts_keeps_only_those_parts() {
        let mut b = sample(2);
        b.dataset = Dataset::Samm;
        b.id = "samm/6/x".into();
        let p = Prepared {
            info: info(),
            samples: vec![sample(1), b],
            shape: [2, 2, 10, 4, 4],
            flow: (0..640).map(|x| x as f32).collect(),
            groups: Default::default(),
        };
        let q = p.select_parts(&[Dataset::Samm]);
        assert_eq!(q.shape, [1, 2, 10, 4, 4]);
        assert_eq!(q.samples[0].id, "samm/6/x");
        assert_eq!(q.flow[0], 320.0);
        q.validate(Path::new("q")).unwrap();
        assert_eq!(
            p.select_parts(&[Dataset::Smic, Dataset::Casme2, Dataset::Samm]),
            p
        );
    }

    #[test]
    fn rejects_inconsistent_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let p = Prepared {
            info: info(),
            samples: vec![sample(1), sample(1)],
            shape: [2, 2, 10, 4, 4],
            flow: vec![0.0; 640],
            groups: Default::default(),
        };
        assert!(p
            .write(&path)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        assert!(!path.exists());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Prepared::read(&path)
            .unwrap_err()
            .to_string()
            .contains("p.safetensors"));
    }
}
