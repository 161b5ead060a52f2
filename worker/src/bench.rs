//! `mer bench train`: training throughput of the paper-size model, plain fp32 path vs. fast path.
//!
//! Each measured step is exactly a target-learning step of the engine ([`crate::engine`]): the batch is
//! gathered and augmented on the device (random crop + temporal variant), SinC3D forward, dropout, focal
//! loss, backward, SGD update. `scripts/bench_torch.py` runs the same network, loss and optimiser in PyTorch
//! eager (without the augmentation) for comparison.

use crate::augment::{Augmenter, DeviceSet};
use crate::device::{configure, device_name, parse_device, peak_rss_bytes};
use crate::engine::target_step;
use crate::error::WorkerError;
use crate::fastpath::Precision;
use crate::focal_loss::Loss;
use crate::model::{classifier_specs, init_params, SinC3D};
use crate::optim::ParamSet;
use mer_shared::prepared::{PrepInfo, Prepared, SampleMeta};
use mer_shared::train_config::TrainConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;
use tch::Device;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Device spec (`auto|cpu|cuda[:N]`).
    pub device: String,
    /// Batch size.
    pub batch: usize,
    /// Intra-op threads (`None`: libtorch's default).
    pub threads: Option<usize>,
    /// Timed steps per mode.
    pub steps: usize,
    /// Untimed warm-up steps per mode.
    pub warmup: usize,
    /// The model (default: the paper's).
    pub cfg: TrainConfig,
}

/// One mode's result.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `fp32` or `fast` (bf16 + channels-last-3d).
    pub mode: String,
    /// Training samples per second.
    pub samples_per_s: f64,
    /// Peak memory in bytes: process RSS on CPU, device memory in use on CUDA (driver view).
    pub peak_bytes: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Device used.
    pub device: String,
    /// Threads libtorch used.
    pub threads: i32,
    /// Batch size.
    pub batch: usize,
    /// Timed steps per mode.
    pub steps: usize,
    /// Results per mode.
    pub results: Vec<BenchResult>,
}

/// Runs the benchmark: the plain fp32 path, then the fast path.
pub fn train_throughput(opts: &BenchOptions) -> Result<BenchReport, WorkerError> {
    let device = parse_device(&opts.device)?;
    configure(device, opts.threads, true);
    if opts.batch == 0 || opts.steps == 0 {
        return Err(WorkerError::InvalidOption {
            option: "batch/steps".into(),
            message: "must be at least 1".into(),
        });
    }
    let cfg = &opts.cfg;
    let model = SinC3D::new(&cfg.model)?;
    let n_samples = (2 * opts.batch).max(8);
    let data = random_prepared(n_samples, &cfg.model, 7);
    let idx_all: Vec<usize> = (0..n_samples).collect();
    let aug = Augmenter::new(&cfg.augment, cfg.model.input_size)?;
    let mut results = Vec::new();
    for fast in [false, true] {
        let prec = Precision::new(fast, device);
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(fast);
        }
        let mut set = DeviceSet::new(&data, &idx_all, &cfg.model, device)?;
        let mut specs = model.param_specs();
        specs.extend(classifier_specs(&cfg.model, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let init = init_params(&specs, &mut rng, device);
        let mut ps = ParamSet::new(specs.iter().map(|s| s.name.clone()).collect(), init, &prec);
        let loss_fn = Loss::new(&cfg.target.loss, 3, device)?;
        reset_peak(device);
        let mut peak = 0u64;
        let mut step = |i: usize, rng: &mut ChaCha8Rng| {
            let idx: Vec<usize> = (0..opts.batch)
                .map(|k| (i * opts.batch + k) % n_samples)
                .collect();
            let vars: Vec<_> = idx.iter().map(|_| aug.draw(rng)).collect();
            let ys: Vec<i64> = idx.iter().map(|&k| (k % 3) as i64).collect();
            let l = target_step(
                &model,
                &prec,
                &mut ps,
                &mut set,
                &idx,
                &vars,
                &ys,
                &loss_fn,
                cfg.model.dropout,
                rng,
                cfg.target.optim.lr,
                &cfg.target.optim,
            );
            // Reading the loss synchronises (as the PyTorch reference does implicitly at its next step).
            l.double_value(&[])
        };
        for i in 0..opts.warmup {
            step(i, &mut rng);
        }
        let t0 = Instant::now();
        for i in 0..opts.steps {
            let l = step(i, &mut rng);
            if !l.is_finite() {
                return Err(WorkerError::Training(format!(
                    "benchmark loss diverged at step {i}"
                )));
            }
            if let Some(m) = crate::device::memory_in_use(device) {
                peak = peak.max(m);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let peak_bytes = if device.is_cuda() {
            (peak > 0).then_some(peak)
        } else {
            peak_rss_bytes()
        };
        results.push(BenchResult {
            mode: if fast { "fast".into() } else { "fp32".into() },
            samples_per_s: (opts.steps * opts.batch) as f64 / secs,
            peak_bytes,
        });
    }
    Ok(BenchReport {
        device: device_name(device),
        threads: tch::get_num_threads(),
        batch: opts.batch,
        steps: opts.steps,
        results,
    })
}

/// Resets the process's peak-RSS counter (Linux: write 5 to /proc/self/clear_refs) so each mode reports its own.
fn reset_peak(device: Device) {
    if device == Device::Cpu {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

/// A random prepared set with the model's geometry (for benchmarks).
pub fn random_prepared(n: usize, m: &mer_shared::train_config::ModelConfig, seed: u64) -> Prepared {
    use rand::Rng;
    let (c, t, s) = (
        m.channels as usize,
        m.frames as usize,
        m.input_size as usize,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let flow: Vec<f32> = (0..n * c * t * s * s)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let samples = (0..n)
        .map(|i| SampleMeta {
            emotion: String::new(),
            onset: 0,
            apex: 0,
            offset: 0,
            keyframe_times: vec![],
            crop_box: [0, 0, 0, 0],
            ..mer_shared::fixtures::sample(
                mer_shared::Dataset::Casme2,
                &format!("sub{:02}", i % 4 + 1),
                &format!("bench{i}"),
                &[("megc3", i % 3)],
            )
        })
        .collect();
    let info = PrepInfo {
        keyframes: "random".into(),
        channels: (0..c).map(|i| format!("c{i}")).collect(),
        mer_version: env!("CARGO_PKG_VERSION").into(),
        ..mer_shared::fixtures::prep_info("none", s as u32, t as u32)
    };
    Prepared {
        info,
        samples,
        shape: [n, c, t, s, s],
        flow,
        groups: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_runs_both_modes_on_a_small_model() {
        let mut cfg = crate::engine::small_config();
        cfg.model.input_size = 32;
        let r = train_throughput(&BenchOptions {
            device: "cpu".into(),
            batch: 2,
            threads: None,
            steps: 2,
            warmup: 1,
            cfg,
        })
        .unwrap();
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.results[1].mode, "fast");
        assert!(r
            .results
            .iter()
            .all(|m| m.samples_per_s > 0.0 && m.peak_bytes.unwrap_or(0) > 0));
    }
}
