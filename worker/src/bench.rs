//! `mer bench train`: training throughput of the paper-size model, plain fp32 path vs. fast path.
//!
//! Each measured step is exactly a target-learning step of the engine ([`crate::mersiamc3d::engine`]): the batch is
//! gathered and augmented on the device (random crop + temporal variant), SinC3D forward, dropout, focal
//! loss, backward, SGD update. `scripts/bench_torch.py` runs the same network, loss and optimiser in PyTorch
//! eager (without the augmentation) for comparison.

use crate::error::WorkerError;
use crate::fixtures::random_prepared;
use crate::mersiamc3d::augment::{Augmenter, DeviceSet};
use crate::mersiamc3d::data_parallel::{target_step, StepContext, TargetBatch, TrainSets};
use crate::mersiamc3d::focal_loss::Loss;
use crate::mersiamc3d::model::{classifier_specs, init_params, SinC3D};
use crate::train::device::{configure, device_name, parse_device, peak_rss_bytes};
use crate::train::optim::ParamSet;
use crate::train::precision::Precision;
use crate::train::replicas::Weights;
use mer_shared::train_config::TrainConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    /// Achieved training TFLOPS (3 x the forward FLOPs per sample x samples/s), a lower bound of the
    /// work done (pools, ReLUs and the augmentation are not counted).
    pub tflops: f64,
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
    /// Forward FLOPs of one sample ([`SinC3D::forward_flops`]).
    pub forward_flops_per_sample: f64,
    /// Results per mode.
    pub results: Vec<BenchResult>,
    /// The cuDNN version libtorch loaded (CUDA only; `91900` for 9.19.0).
    pub cudnn_version: Option<u64>,
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
    let flops = model.forward_flops();
    let mut results = Vec::new();
    for fast in [false, true] {
        let prec = Precision::new(fast, device);
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(fast);
        }
        let set = DeviceSet::new(&data, &idx_all, &cfg.model, device)?;
        let mut specs = model.param_specs();
        specs.extend(classifier_specs(&cfg.model, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let init = init_params(&specs, &mut rng, device);
        let ps = ParamSet::new(specs.iter().map(|s| s.name.clone()).collect(), init, &prec);
        let mut weights = Weights::One(ps);
        let mut sets = TrainSets {
            primary: set,
            others: Vec::new(),
        };
        let loss_fn = Loss::new(&cfg.target.loss, 3, device)?;
        reset_peak(device);
        let mut peak = 0u64;
        let mut step = |i: usize, rng: &mut ChaCha8Rng| {
            let idx: Vec<usize> = (0..opts.batch)
                .map(|k| (i * opts.batch + k) % n_samples)
                .collect();
            let vars: Vec<_> = idx.iter().map(|_| aug.draw(rng)).collect();
            let ys: Vec<i64> = idx.iter().map(|&k| (k % 3) as i64).collect();
            let ctx = StepContext {
                model: &model,
                prec: &prec,
                lr: cfg.target.optim.lr,
                optim: &cfg.target.optim,
            };
            let batch = TargetBatch {
                idx: &idx,
                vars: &vars,
                ys: &ys,
                loss: &loss_fn,
                dropout: cfg.model.dropout,
            };
            let l = target_step(&ctx, &mut weights, &mut sets, &batch, rng)?;
            // Reading the loss synchronises (as the PyTorch reference does implicitly at its next step).
            Ok::<f64, WorkerError>(l.double_value(&[]))
        };
        for i in 0..opts.warmup {
            step(i, &mut rng)?;
        }
        let t0 = Instant::now();
        for i in 0..opts.steps {
            let l = step(i, &mut rng)?;
            if !l.is_finite() {
                return Err(WorkerError::Training(format!(
                    "benchmark loss diverged at step {i}"
                )));
            }
            if let Some(m) = crate::train::device::memory_in_use(device) {
                peak = peak.max(m);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let peak_bytes = if device.is_cuda() {
            (peak > 0).then_some(peak)
        } else {
            peak_rss_bytes()
        };
        let samples_per_s = (opts.steps * opts.batch) as f64 / secs;
        results.push(BenchResult {
            mode: if fast { "fast".into() } else { "fp32".into() },
            samples_per_s,
            peak_bytes,
            tflops: 3.0 * flops * samples_per_s / 1e12,
        });
    }
    Ok(BenchReport {
        device: device_name(device),
        threads: tch::get_num_threads(),
        batch: opts.batch,
        steps: opts.steps,
        forward_flops_per_sample: flops,
        results,
        cudnn_version: device
            .is_cuda()
            .then(crate::train::device::cudnn_version)
            .flatten(),
    })
}

/// What `mer bench allreduce` measures: the gradient collective of data-parallel training
/// ([`crate::mersiamc3d::data_parallel::collective_for`], the one training uses: NCCL on CUDA devices with the `cuda`
/// feature, else the copying CPU backend), summing one float tensor per replica.
#[derive(Debug, Clone, Serialize)]
pub struct AllReduceReport {
    /// The collective's name (`nccl`, `cpu`).
    pub backend: String,
    /// The replicas' devices.
    pub devices: Vec<String>,
    /// Elements per replica.
    pub elements: usize,
    /// Timed all-reduces.
    pub iters: usize,
    /// Whether every replica held the exact sum afterwards (replica r contributes r + 1 to every element).
    pub correct: bool,
    /// Mean seconds per all-reduce.
    pub seconds: f64,
    /// Bus bandwidth in GB/s (NCCL's convention: bytes x 2 (n - 1) / n / time).
    pub bus_gb_per_s: f64,
}

/// Runs `iters` timed all-reduces of `elements` floats on each of `devices` (a replica device string as
/// `train.device` takes it, for `replicas` replicas) and checks the sums.
pub fn allreduce(
    devices: &str,
    replicas: usize,
    elements: usize,
    iters: usize,
) -> Result<AllReduceReport, WorkerError> {
    let devs = crate::train::device::parse_devices(devices, replicas)?;
    if elements == 0 || iters == 0 {
        return Err(WorkerError::InvalidOption {
            option: "elements/iters".into(),
            message: "an all-reduce needs at least 1 element and 1 iteration".into(),
        });
    }
    let collective = crate::train::replicas::collective_for(&devs)?;
    let n = devs.len();
    let bufs: Vec<Vec<Tensor>> = devs
        .iter()
        .enumerate()
        .map(|(r, &d)| {
            vec![Tensor::full(
                [elements as i64],
                (r + 1) as f64,
                (Kind::Float, d),
            )]
        })
        .collect();
    // One untimed round (communicator warm-up) that is also the correctness check.
    collective.all_reduce_sum(&bufs)?;
    let want = (n * (n + 1) / 2) as f64;
    let correct = bufs.iter().all(|b| {
        let t = &b[0];
        t.min().double_value(&[]) == want && t.max().double_value(&[]) == want
    });
    let t0 = Instant::now();
    for _ in 0..iters {
        collective.all_reduce_sum(&bufs)?;
    }
    let seconds = t0.elapsed().as_secs_f64() / iters as f64;
    let bytes = (elements * 4) as f64;
    // NCCL's bus-bandwidth factor 2 (n - 1) / n; one replica moves nothing over the bus, so its algorithm
    // bandwidth (factor 1) is reported, as NCCL does.
    let bus_factor = if n == 1 {
        1.0
    } else {
        2.0 * (n as f64 - 1.0) / n as f64
    };
    Ok(AllReduceReport {
        backend: collective.name().into(),
        devices: devs.iter().map(|&d| device_name(d)).collect(),
        elements,
        iters,
        correct,
        seconds,
        bus_gb_per_s: bytes * bus_factor / seconds.max(1e-12) / 1e9,
    })
}

/// Resets the process's peak-RSS counter (Linux: write 5 to /proc/self/clear_refs) so each mode reports its own.
fn reset_peak(device: Device) {
    if device == Device::Cpu {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_all_reduce_sums_exactly_and_names_its_backend() {
        let r = allreduce("cpu", 3, 1000, 2).unwrap();
        assert_eq!((r.backend.as_str(), r.correct), ("cpu", true), "{r:?}");
        assert_eq!(r.devices, vec!["cpu"; 3]);
        assert!(allreduce("cpu", 2, 0, 1).is_err());
        assert!(allreduce("cpu,cpu", 3, 10, 1).is_err());
    }

    #[test]
    fn bench_runs_both_modes_on_a_small_model() {
        let mut cfg = crate::mersiamc3d::engine::small_config();
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
