//! A fold's samples on the training device, and the 36x augmentation applied to them on the fly.
//!
//! The 36 variants (design.md) are 9 crop positions x 4 temporal variants:
//! - crop: cut `c` pixels (`c` drawn from `augment.crop_px`, per occurrence) so that an `(S-c) x (S-c)` window
//!   remains, placed at one of the 3 x 3 grid positions (offset 0, c/2 or c on each axis; position 4 is the
//!   centre), and resize it back to `S x S` bilinearly. The flow vectors are multiplied by `S / (S-c)` because
//!   displacements grow with the image. Implemented as one batched `grid_sample` (bilinear, border
//!   padding, align_corners = false, which is exactly "crop, then resize like OpenCV") on the device.
//! - temporal: 0 original; 1 drop the first flow frame; 2 drop the second; 3 drop both; the sequence is padded
//!   back to T frames by repeating its last frame. Implemented as a row gather on the device.
//!
//! Test samples never pass through here with augmentation: [`DeviceSet::batch`] with `None` variants is the
//! identity. The whole set is moved to the device once per stage; a batch costs one gather, one grid sample
//! and one layout/dtype conversion on the device, plus two tiny index/parameter uploads from reused buffers.

use crate::error::WorkerError;
use crate::prep::planes::flow_to_apex;
use crate::train::precision::Precision;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::{AugmentConfig, InputFlow, InputScale, ModelConfig};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Number of crop positions.
pub const CROP_POSITIONS: u8 = 9;
/// Number of temporal variants.
pub const TEMPORAL_VARIANTS: u8 = 4;

/// One augmentation variant of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Crop position 0..9 (row-major 3x3 grid) and pixels cut; `None` = no crop.
    pub crop: Option<(u8, u32)>,
    /// Temporal variant 0..4 (0 = original).
    pub temporal: u8,
}

impl Variant {
    /// The unaugmented sample.
    pub const IDENTITY: Variant = Variant {
        crop: None,
        temporal: 0,
    };
}

/// Draws augmentation variants from the configuration.
#[derive(Debug, Clone)]
pub struct Augmenter {
    cfg: AugmentConfig,
}

impl Augmenter {
    /// Checks the configuration (crop range within what the input size allows).
    pub fn new(cfg: &AugmentConfig, input_size: i64) -> Result<Self, WorkerError> {
        let [lo, hi] = cfg.crop_px;
        if cfg.crops && (lo > hi || hi as i64 >= input_size / 2) {
            return Err(WorkerError::InvalidOption {
                option: "augment.crop_px".into(),
                message: format!("[{lo}, {hi}] must be an increasing range below half the input size {input_size}"),
            });
        }
        if cfg.variants_per_epoch == 0 {
            return Err(WorkerError::InvalidOption {
                option: "augment.variants_per_epoch".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(Augmenter { cfg: cfg.clone() })
    }

    /// Number of distinct variant kinds enabled (36, 9, 4 or 1).
    pub fn kinds(&self) -> usize {
        let c = if self.cfg.crops {
            CROP_POSITIONS as usize
        } else {
            1
        };
        let t = if self.cfg.temporal {
            TEMPORAL_VARIANTS as usize
        } else {
            1
        };
        c * t
    }

    fn kind(&self, k: usize, rng: &mut ChaCha8Rng) -> Variant {
        let t = if self.cfg.temporal {
            TEMPORAL_VARIANTS as usize
        } else {
            1
        };
        let (pos, temporal) = (k / t, (k % t) as u8);
        let crop = self.cfg.crops.then(|| {
            (
                pos as u8,
                rng.random_range(self.cfg.crop_px[0]..=self.cfg.crop_px[1]),
            )
        });
        Variant { crop, temporal }
    }

    /// A random variant (for prior-learning pairs).
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> Variant {
        let k = rng.random_range(0..self.kinds());
        self.kind(k, rng)
    }

    /// One target-learning epoch: each of the `n` samples `variants_per_epoch` times (capped at
    /// [`Augmenter::kinds`]), each time a different variant kind, all shuffled.
    pub fn epoch_plan(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, Variant)> {
        let kinds = self.kinds();
        let per = self.cfg.variants_per_epoch.min(kinds);
        let mut all: Vec<usize> = (0..kinds).collect();
        let mut plan = Vec::with_capacity(n * per);
        for i in 0..n {
            all.shuffle(rng);
            for &k in &all[..per] {
                let v = self.kind(k, rng);
                plan.push((i, v));
            }
        }
        plan.shuffle(rng);
        plan
    }
}

/// Frame `t` of the temporal variant `v` for a sequence of `frames` frames.
pub fn temporal_source(v: u8, t: usize, frames: usize) -> usize {
    let dropped: &[usize] = match v {
        1 => &[0],
        2 => &[1],
        3 => &[0, 1],
        _ => &[],
    };
    let kept: Vec<usize> = (0..frames).filter(|f| !dropped.contains(f)).collect();
    if kept.is_empty() {
        return frames.saturating_sub(1);
    }
    kept[t.min(kept.len() - 1)]
}

/// A fold's samples, resized to the model input and stored on the training device as `[N*T, C, S, S]` fp32
/// (row = sample * T + frame), the layout the augmentation gathers from.
#[derive(Debug)]
pub struct DeviceSet {
    frames: Tensor,
    n: usize,
    c: i64,
    t: i64,
    s: i64,
    rows: Vec<i64>,
    theta: Vec<f32>,
    scale: Vec<f32>,
    /// `model.input_scale = "sample-minmax"`: every batch's samples are min-max scaled per channel after
    /// augmentation, so a crop's zoom changes the layout the network sees but never the value range.
    per_sample_min_max: bool,
}

/// The per-sample min-max rule at the network's input (`model.input_scale = "sample-minmax"`): each
/// channel of each sample of `x` (`[B, T, C, S, S]`) is mapped to [0, 1] over its frames and pixels; a
/// constant channel becomes 0. It is `baselines::cnn::normalise_inputs`'s rule over a clip instead of one
/// image (a test checks the two agree), computed on the device in the input's dtype.
pub fn min_max_per_sample_channel(x: &Tensor) -> Tensor {
    let x = x.nan_to_num(0.0, 0.0, 0.0);
    let lo = x.amin([1, 3, 4], true);
    let range = x.amax([1, 3, 4], true) - &lo;
    let ok = range.gt(0.0);
    let safe = range.where_self(&ok, &range.ones_like());
    let zero = safe.zeros_like();
    ((x - lo) / safe).where_self(&ok, &zero)
}

impl DeviceSet {
    /// Copies samples `indices` of `data` to `device`, resizing `H x W` to `model.input_size` (bilinear with
    /// antialiasing; flow vectors scaled by the size ratio). Checks channels/frames against the model.
    pub fn new(
        data: &Prepared,
        indices: &[usize],
        model: &ModelConfig,
        device: Device,
    ) -> Result<Self, WorkerError> {
        let [_, c, t, h, w] = data.shape;
        if c as i64 != model.channels || !model.reads_file_frames(t as i64) {
            return Err(WorkerError::Training(format!(
                "the prepared data has {c} flow channels x {t} frames, the model expects {} x {} (model.channels / model.frames)",
                model.channels, model.frames
            )));
        }
        if h != w {
            return Err(WorkerError::Training(format!(
                "prepared flow frames are {h}x{w}; square frames are required"
            )));
        }
        let s = model.input_size;
        // `apex-sum` stores one frame per sample: its flows summed to the apex key-frame.
        let apex_sum = model.input_flow == InputFlow::ApexSum;
        let mut buf = Vec::with_capacity(indices.len() * data.sample_len());
        for &i in indices {
            if apex_sum {
                buf.extend(flow_to_apex(data, i)?);
            } else {
                buf.extend_from_slice(data.sample_flow(i));
            }
        }
        let n = indices.len();
        let ti = if apex_sum { 1 } else { t as i64 };
        let (ci, hi) = (c as i64, h as i64);
        let x = Tensor::from_slice(&buf)
            .view([n as i64, ci, ti, hi, hi])
            .permute([0, 2, 1, 3, 4])
            .contiguous()
            .view([n as i64 * ti, ci, hi, hi]);
        drop(buf);
        let x = if hi == s {
            x
        } else {
            let f = s as f64 / hi as f64;
            x.internal_upsample_bilinear2d_aa([s, s], false, None, None) * f
        };
        let x = match model.input_flow {
            InputFlow::Consecutive | InputFlow::ApexSum => x,
            // Rows are sample-major, frames in order: sum along the frame axis of each sample.
            InputFlow::Cumulative => x
                .view([n as i64, ti, ci, s, s])
                .cumsum(1, Kind::Float)
                .view([n as i64 * ti, ci, s, s]),
        };
        Ok(DeviceSet {
            frames: x.to_device(device),
            n,
            c: ci,
            t: ti,
            s,
            rows: Vec::new(),
            theta: Vec::new(),
            scale: Vec::new(),
            per_sample_min_max: model.input_scale == InputScale::SampleMinMax,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Root-mean-square of every stored flow value (the statistic of the `train-rms` input scale).
    pub fn rms(&self) -> f64 {
        tch::no_grad(|| {
            self.frames
                .square()
                .mean(Kind::Double)
                .sqrt()
                .double_value(&[])
        })
    }

    /// The gain that `scale` prescribes for a fold whose training samples are this set (never call it on
    /// a test set: the test samples get the training set's gain).
    pub fn input_gain(&self, scale: InputScale) -> Result<f64, WorkerError> {
        match scale {
            // Per-sample min-max is applied in `batch`, on each sample as the network sees it.
            InputScale::Raw | InputScale::SampleMinMax => Ok(1.0),
            InputScale::TrainRms => {
                let r = self.rms();
                if r.is_finite() && r > 0.0 {
                    Ok(1.0 / r)
                } else {
                    Err(WorkerError::Training(format!(
                        "model.input_scale = \"train-rms\": the training samples' flow has RMS {r}, no gain can normalise it"
                    )))
                }
            }
        }
    }

    /// Multiplies every stored flow value by `gain` (the fold's input scale); a gain of 1 leaves the
    /// values bit-identical.
    pub fn scale(&mut self, gain: f64) {
        if gain != 1.0 {
            let _ = tch::no_grad(|| self.frames.g_mul_scalar_(gain));
        }
    }

    /// True when the set holds no sample.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The model input for samples `idx` (positions in this set), with per-sample `variants` (training) or
    /// none (testing: exactly the stored flow): `[B, C, T, S, S]` in the compute dtype and layout.
    pub fn batch(
        &mut self,
        idx: &[usize],
        variants: Option<&[Variant]>,
        prec: &Precision,
    ) -> Tensor {
        let (b, t, s) = (idx.len() as i64, self.t, self.s);
        self.rows.clear();
        for (k, &i) in idx.iter().enumerate() {
            let v = variants.map(|v| v[k].temporal).unwrap_or(0);
            for f in 0..t as usize {
                self.rows
                    .push(i as i64 * t + temporal_source(v, f, t as usize) as i64);
            }
        }
        let dev = self.frames.device();
        let rows = Tensor::from_slice(&self.rows).to_device(dev);
        let mut x = self.frames.index_select(0, &rows);
        if let Some(vars) = variants.filter(|v| v.iter().any(|v| v.crop.is_some())) {
            self.theta.clear();
            self.scale.clear();
            for v in vars {
                let (sc, tx, ty) = match v.crop {
                    None => (1.0f64, 0.0, 0.0),
                    Some((pos, cut)) => {
                        let sz = s as f64;
                        let sc = (sz - cut as f64) / sz;
                        let off = |p: u8| match p {
                            0 => 0.0,
                            1 => (cut / 2) as f64,
                            _ => cut as f64,
                        };
                        let (oy, ox) = (off(pos / 3), off(pos % 3));
                        (sc, 2.0 * ox / sz - 1.0 + sc, 2.0 * oy / sz - 1.0 + sc)
                    }
                };
                for _ in 0..t {
                    self.theta
                        .extend_from_slice(&[sc as f32, 0.0, tx as f32, 0.0, sc as f32, ty as f32]);
                    self.scale.push((1.0 / sc) as f32);
                }
            }
            let theta = Tensor::from_slice(&self.theta)
                .view([b * t, 2, 3])
                .to_device(dev);
            let scale = Tensor::from_slice(&self.scale)
                .view([b * t, 1, 1, 1])
                .to_device(dev);
            let grid = Tensor::affine_grid_generator(&theta, [b * t, self.c, s, s], false);
            // interpolation 0 = bilinear, padding 1 = border.
            x = x.grid_sampler(&grid, 0, 1, false) * scale;
        }
        // [B*T, C, S, S] -> logical [B, C, T, S, S]; channels-last-3d memory [B, T, S, S, C] on the fast path.
        let x = x.view([b, t, self.c, s, s]);
        let x = if self.per_sample_min_max {
            min_max_per_sample_channel(&x)
        } else {
            x
        };
        if prec.channels_last {
            let out = Tensor::empty([b, t, s, s, self.c], (prec.kind(), dev));
            let mut out_v = out.permute([0, 1, 4, 2, 3]);
            out_v.copy_(&x);
            out.permute([0, 4, 1, 2, 3])
        } else {
            x.permute([0, 2, 1, 3, 4]).to_kind(prec.kind()).contiguous()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_shared::prepared::SampleMeta;
    use mer_shared::Dataset;
    use rand::SeedableRng;
    use tch::Kind;

    pub(crate) fn prepared(n: usize, size: usize, frames: usize) -> Prepared {
        let len = 2 * frames * size * size;
        let flow: Vec<f32> = (0..n * len)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let samples = (0..n)
            .map(|i| SampleMeta {
                emotion: "happiness".into(),
                onset: 0,
                apex: 1,
                offset: 2,
                keyframe_times: vec![],
                ..mer_shared::fixtures::sample(
                    Dataset::Casme2,
                    "sub01",
                    &format!("c{i}"),
                    &[("megc3", 1)],
                )
            })
            .collect();
        let info = mer_shared::fixtures::prep_info("test", size as u32, frames as u32);
        Prepared {
            info,
            samples,
            shape: [n, 2, frames, size, size],
            flow,
            groups: Default::default(),
        }
    }

    fn model(size: i64) -> ModelConfig {
        ModelConfig {
            input_size: size,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn identity_batch_is_the_stored_flow_in_both_layouts() {
        let p = prepared(3, 32, 10);
        let mut set = DeviceSet::new(&p, &[2, 0], &model(32), Device::Cpu).unwrap();
        let plain = Precision::new(false, Device::Cpu);
        let x = set.batch(&[0, 1], None, &plain);
        let want = Tensor::from_slice(p.sample_flow(2)).view([2, 10, 32, 32]);
        assert_eq!(x.size(), vec![2, 2, 10, 32, 32]);
        assert!(x.get(0).equal(&want));
        let fast = Precision::new(true, Device::Cpu);
        let xf = set.batch(&[0, 1], None, &fast);
        assert_eq!(xf.kind(), Kind::BFloat16);
        // channels-last-3d: the channel stride is 1.
        assert_eq!(xf.stride()[1], 1);
        assert!(xf.to_kind(Kind::Float).allclose(&x, 0.02, 0.02, false));
    }

    #[test]
    fn temporal_variants_drop_and_pad() {
        let src = |v| {
            (0..10)
                .map(|t| temporal_source(v, t, 10))
                .collect::<Vec<_>>()
        };
        assert_eq!(src(0), (0..10).collect::<Vec<_>>());
        assert_eq!(src(1), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 9]);
        assert_eq!(src(2), vec![0, 2, 3, 4, 5, 6, 7, 8, 9, 9]);
        assert_eq!(src(3), vec![2, 3, 4, 5, 6, 7, 8, 9, 9, 9]);
        let p = prepared(1, 32, 10);
        let mut set = DeviceSet::new(&p, &[0], &model(32), Device::Cpu).unwrap();
        let plain = Precision::new(false, Device::Cpu);
        let x = set.batch(
            &[0],
            Some(&[Variant {
                crop: None,
                temporal: 3,
            }]),
            &plain,
        );
        let orig = set.batch(&[0], None, &plain);
        assert!(x.narrow(2, 0, 7).equal(&orig.narrow(2, 2, 7)));
        assert!(x.narrow(2, 9, 1).equal(&orig.narrow(2, 9, 1)));
    }

    #[test]
    fn crops_resize_bilinearly_and_scale_vectors() {
        // A constant flow field stays constant after crop + resize, multiplied by S / (S - c).
        let mut p = prepared(1, 32, 10);
        p.flow.iter_mut().for_each(|v| *v = 1.0);
        let mut set = DeviceSet::new(&p, &[0], &model(32), Device::Cpu).unwrap();
        let plain = Precision::new(false, Device::Cpu);
        let x = set.batch(
            &[0],
            Some(&[Variant {
                crop: Some((0, 4)),
                temporal: 0,
            }]),
            &plain,
        );
        let want = 32.0 / 28.0;
        assert!(
            (x.min().double_value(&[]) - want).abs() < 1e-5
                && (x.max().double_value(&[]) - want).abs() < 1e-5
        );
        // A horizontal ramp u(x) = x: the top-left crop of width 28 resized to 32 samples x' = (j+0.5)*28/32-0.5.
        let mut p = prepared(1, 32, 10);
        let len = 32 * 32;
        for (i, v) in p.flow.iter_mut().enumerate() {
            *v = (i % 32) as f32 * if (i / len) % 20 < 10 { 1.0 } else { 0.0 };
        }
        let mut set = DeviceSet::new(&p, &[0], &model(32), Device::Cpu).unwrap();
        for (pos, ox) in [(0u8, 0.0f64), (4, 2.0), (8, 4.0)] {
            let x = set.batch(
                &[0],
                Some(&[Variant {
                    crop: Some((pos, 4)),
                    temporal: 0,
                }]),
                &plain,
            );
            for j in [3i64, 16, 28] {
                let src = ox + (j as f64 + 0.5) * 28.0 / 32.0 - 0.5;
                let got = x.double_value(&[0, 0, 0, 5, j]);
                assert!(
                    (got - src * 32.0 / 28.0).abs() < 1e-4,
                    "pos {pos} j {j}: {got} vs {}",
                    src * 32.0 / 28.0
                );
            }
        }
    }

    #[test]
    fn resizes_to_the_model_input_and_scales_flow() {
        let mut p = prepared(2, 64, 10);
        p.flow.iter_mut().for_each(|v| *v = 2.0);
        let mut set = DeviceSet::new(&p, &[0, 1], &model(32), Device::Cpu).unwrap();
        let x = set.batch(&[1], None, &Precision::new(false, Device::Cpu));
        assert_eq!(x.size(), vec![1, 2, 10, 32, 32]);
        assert!((x.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-5);
        let bad = ModelConfig {
            frames: 8,
            ..model(32)
        };
        assert!(DeviceSet::new(&p, &[0], &bad, Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("model.frames"));
    }

    #[test]
    fn epoch_plans_cover_distinct_variants() {
        let aug = Augmenter::new(&AugmentConfig::default(), 112).unwrap();
        assert_eq!(aug.kinds(), 36);
        let plan = aug.epoch_plan(3, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(plan.len(), 108);
        for i in 0..3 {
            let mut kinds: Vec<(u8, u8)> = plan
                .iter()
                .filter(|(s, _)| *s == i)
                .map(|(_, v)| (v.crop.unwrap().0, v.temporal))
                .collect();
            kinds.sort();
            kinds.dedup();
            assert_eq!(kinds.len(), 36);
        }
        assert!(plan
            .iter()
            .all(|(_, v)| (2..=5).contains(&v.crop.unwrap().1)));
        let few = Augmenter::new(
            &AugmentConfig {
                variants_per_epoch: 2,
                temporal: false,
                ..AugmentConfig::default()
            },
            112,
        )
        .unwrap();
        assert_eq!(few.kinds(), 9);
        let plan = few.epoch_plan(5, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(plan.len(), 10);
        assert!(plan.iter().all(|(_, v)| v.temporal == 0));
        assert_eq!(plan, few.epoch_plan(5, &mut ChaCha8Rng::seed_from_u64(1)));
        assert!(Augmenter::new(
            &AugmentConfig {
                crop_px: [5, 2],
                ..AugmentConfig::default()
            },
            112
        )
        .is_err());
    }

    #[test]
    fn cumulative_input_holds_the_running_sum_of_the_consecutive_flows() {
        let p = prepared(3, 32, 10);
        let prec = Precision::new(false, Device::Cpu);
        let mut plain = DeviceSet::new(&p, &[0, 2], &model(32), Device::Cpu).unwrap();
        let mut m = model(32);
        m.input_flow = InputFlow::Cumulative;
        let mut cum = DeviceSet::new(&p, &[0, 2], &m, Device::Cpu).unwrap();
        let a = plain.batch(&[0, 1], None, &prec); // [B, C, T, S, S]
        let b = cum.batch(&[0, 1], None, &prec);
        let want = a.cumsum(2, Kind::Float);
        let diff = (b - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        assert!(
            !a.allclose(&want, 1e-5, 1e-5, false),
            "the fixture's flow is not constant"
        );
    }

    #[test]
    fn apex_sum_input_is_one_frame_summed_to_each_samples_apex_key_frame() {
        let mut p = prepared(3, 32, 10);
        let times: Vec<f64> = (0..11).map(|i| f64::from(i) * 10.0).collect();
        for (sample, apex) in p.samples.iter_mut().zip([42, 5, 100]) {
            sample.keyframe_times = times.clone();
            sample.apex = apex;
        }
        let prec = Precision::new(false, Device::Cpu);
        let mut plain = DeviceSet::new(&p, &[0, 1, 2], &model(32), Device::Cpu).unwrap();
        let mut m = model(32);
        m.input_flow = InputFlow::ApexSum;
        // The model must say it reads one frame.
        assert!(DeviceSet::new(&p, &[0], &m, Device::Cpu).is_err());
        m.frames = 1;
        let mut one = DeviceSet::new(&p, &[0, 1, 2], &m, Device::Cpu).unwrap();
        let a = plain.batch(&[0, 1, 2], None, &prec); // [B, C, 10, S, S]
        let b = one.batch(&[0, 1, 2], None, &prec); // [B, C, 1, S, S]
        assert_eq!(b.size(), vec![3, 2, 1, 32, 32]);
        // Apex key-frames 4, 1 (an apex before the second key-frame still sums one flow) and 10.
        for (k, frames) in [4i64, 1, 10].into_iter().enumerate() {
            let want = a
                .get(k as i64)
                .narrow(1, 0, frames)
                .sum_dim_intlist(1, true, Kind::Float);
            let diff = (b.get(k as i64) - want).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "sample {k}: {diff}");
        }
        // Temporal variants have nothing to drop from one frame.
        let v = [Variant {
            crop: None,
            temporal: 3,
        }];
        assert!(one
            .batch(&[0], Some(&v), &prec)
            .equal(&one.batch(&[0], None, &prec)));
        // No key-frame times: the error names the sample.
        p.samples[2].keyframe_times.clear();
        let e = DeviceSet::new(&p, &[0, 2], &m, Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&p.samples[2].id), "{e}");
    }

    #[test]
    fn sample_minmax_is_the_baselines_rule_over_each_clip_after_augmentation() {
        let p = prepared(3, 32, 10);
        let prec = Precision::new(false, Device::Cpu);
        let mut raw = DeviceSet::new(&p, &[0, 2], &model(32), Device::Cpu).unwrap();
        let mut m = model(32);
        m.input_scale = InputScale::SampleMinMax;
        let mut norm = DeviceSet::new(&p, &[0, 2], &m, Device::Cpu).unwrap();
        assert_eq!(norm.input_gain(m.input_scale).unwrap(), 1.0);
        let vars = [
            Variant {
                crop: Some((4, 3)),
                temporal: 1,
            },
            Variant {
                crop: None,
                temporal: 0,
            },
        ];
        for v in [None, Some(&vars[..])] {
            // [B, C, T, S, S], contiguous: each channel of each sample is T*S*S consecutive values.
            let a = raw.batch(&[0, 1], v, &prec);
            let b = norm.batch(&[0, 1], v, &prec);
            let mut want = Vec::<f32>::try_from(a.flatten(0, -1)).unwrap();
            crate::baselines::cnn::min_max_chunks(&mut want, 10 * 32 * 32);
            let got = Vec::<f32>::try_from(b.flatten(0, -1)).unwrap();
            let diff = want
                .iter()
                .zip(&got)
                .map(|(w, g)| (w - g).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-6, "{diff}");
            assert!(got.iter().all(|g| (0.0..=1.0).contains(g)));
        }
        // A channel without motion becomes 0, not NaN.
        let z = min_max_per_sample_channel(&Tensor::zeros(
            [1, 10, 2, 4, 4],
            (Kind::Float, Device::Cpu),
        ));
        assert_eq!(z.abs().sum(Kind::Double).double_value(&[]), 0.0);
    }

    #[test]
    fn train_rms_gain_gives_the_training_set_unit_rms_and_raw_changes_nothing() {
        let p = prepared(3, 32, 10);
        let mut set = DeviceSet::new(&p, &[0, 1], &model(32), Device::Cpu).unwrap();
        let before = set.batch(&[0, 1], None, &Precision::new(false, Device::Cpu));
        assert_eq!(set.input_gain(InputScale::Raw).unwrap(), 1.0);
        set.scale(1.0);
        let same = set.batch(&[0, 1], None, &Precision::new(false, Device::Cpu));
        assert!(before.equal(&same));
        let g = set.input_gain(InputScale::TrainRms).unwrap();
        assert!((g - 1.0 / set.rms()).abs() < 1e-12 && g != 1.0);
        set.scale(g);
        assert!((set.rms() - 1.0).abs() < 1e-6, "{}", set.rms());
        // A set without any motion cannot be normalised: a clear error, not an infinite gain.
        let mut z = DeviceSet::new(&p, &[0], &model(32), Device::Cpu).unwrap();
        z.scale(0.0);
        let e = z.input_gain(InputScale::TrainRms).unwrap_err().to_string();
        assert!(e.contains("input_scale") && e.contains("RMS"), "{e}");
    }
}
