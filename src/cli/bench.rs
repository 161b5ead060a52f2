//! `mer bench ...`: benchmarks that print numbers (never timed assertions in tests).

use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Pooled scoring throughput: scores N random prediction sets over the 442-clip composite.
    Score {
        /// Number of prediction sets.
        #[arg(long, default_value_t = 10_000)]
        sets: usize,
    },
    /// Orchestrator throughput over real gRPC on loopback: a coordinator (SQLite state) and W in-process
    /// worker agents with the simulated trainer run one experiment of about N tasks; prints tasks/s,
    /// lease latency percentiles and peak RSS.
    Scheduler {
        /// Approximate number of tasks.
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        /// Worker agents (one connection and one slot each).
        #[arg(long, default_value_t = 64)]
        workers: usize,
    },
    /// Data preparation throughput: generates a synthetic preset in a temporary folder, runs `mer prep` on it
    /// and prints clips/s.
    #[cfg(feature = "worker")]
    Prep {
        /// Synthetic preset to prepare (tiny, mini, composite).
        #[arg(long, default_value = "mini")]
        preset: String,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Training throughput of the paper-size SinC3D (target-learning steps incl. on-device augmentation):
    /// the plain fp32 path and the fast path (bf16 + channels-last-3d), samples/s and peak memory.
    /// Compare with `python scripts/bench_torch.py` (same model, batch and threads in PyTorch eager).
    #[cfg(feature = "worker")]
    Train {
        /// Device: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Batch size.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Intra-op CPU threads (default: libtorch's, one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Timed steps per mode.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Untimed warm-up steps per mode.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The device's dense bf16 peak in TFLOPS (e.g. 989 for an H100/H200 SXM), to print the share
        /// of it each mode reaches.
        #[arg(long)]
        peak_tflops: Option<f64>,
    },
    /// The gradient all-reduce of data-parallel training (`train.devices_per_task`): the collective
    /// training uses (NCCL on CUDA devices in a build with the `cuda` feature, else the CPU backend) sums
    /// one float tensor per replica; prints whether the sums are exact, seconds per all-reduce and bus
    /// bandwidth.
    #[cfg(feature = "worker")]
    Allreduce {
        /// The replicas' devices as `train.device` takes them: `cuda:0` for cuda:0 .. cuda:N-1,
        /// `cuda:0,cuda:2`, or `cpu`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Replicas (devices).
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Size of each replica's buffer in MiB of fp32.
        #[arg(long, default_value_t = 64.0)]
        mib: f64,
        /// Timed all-reduces.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One baseline method over every LOSO fold of a prepared file, in this process, outside the
    /// orchestrator (defaults: the method's original settings): prints the first fold's seconds (which
    /// include computing per-file inputs such as the LBP-TOP features), the other folds', the total, and
    /// the pooled UF1 / UAR.
    #[cfg(feature = "worker")]
    Baseline {
        /// The prepared file (with the method's tensor group).
        #[arg(long)]
        data: std::path::PathBuf,
        /// lbptop_svm, ststnet or offapexnet.
        #[arg(long, default_value = "lbptop_svm")]
        method: String,
        /// Label scheme.
        #[arg(long, default_value = "megc3")]
        scheme: String,
        /// Only the first N folds.
        #[arg(long)]
        folds: Option<usize>,
        /// Epochs of a CNN baseline (default: the original's).
        #[arg(long)]
        epochs: Option<usize>,
        /// Intra-op CPU threads of a CNN baseline.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Score { sets } => super::score::bench(sets),
        BenchCommand::Scheduler { tasks, workers } => {
            super::cluster::bench_scheduler(tasks, workers)
        }
        #[cfg(feature = "worker")]
        BenchCommand::Prep {
            preset,
            threads,
            seed,
        } => super::data::bench_prep(&preset, threads, seed),
        #[cfg(feature = "worker")]
        BenchCommand::Train {
            device,
            batch,
            threads,
            steps,
            warmup,
            json,
            peak_tflops,
        } => bench_train(device, batch, threads, steps, warmup, json, peak_tflops),
        #[cfg(feature = "worker")]
        BenchCommand::Allreduce {
            device,
            replicas,
            mib,
            iters,
            json,
        } => bench_allreduce(&device, replicas, mib, iters, json),
        #[cfg(feature = "worker")]
        BenchCommand::Baseline {
            data,
            method,
            scheme,
            folds,
            epochs,
            threads,
            seed,
        } => bench_baseline(&data, &method, &scheme, folds, epochs, threads, seed),
    }
}

/// `mer bench baseline`: one baseline method over the folds of a prepared file (see the command's help).
#[cfg(feature = "worker")]
fn bench_baseline(
    path: &std::path::Path,
    method: &str,
    scheme: &str,
    folds: Option<usize>,
    epochs: Option<usize>,
    threads: usize,
    seed: u64,
) -> anyhow::Result<()> {
    use mer_shared::method::{BaselineSettings, Method, MethodsConfig};
    let method: Method = Method::builtin(method).map_err(anyhow::Error::msg)?;
    let scheme: mer_shared::LabelScheme = scheme.parse()?;
    let mut settings = MethodsConfig::default()
        .settings(&method)
        .ok_or_else(|| anyhow::anyhow!("{method} is not a baseline (time it with `mer run`)"))?;
    if let Some(e) = epochs {
        match &mut settings {
            BaselineSettings::Ststnet(c) => c.epochs = e,
            BaselineSettings::Offapexnet(c) => c.epochs = e,
            BaselineSettings::LbptopSvm(_) => anyhow::bail!("--epochs: lbptop_svm has no epochs"),
            BaselineSettings::User(_) => {
                anyhow::bail!("--epochs: only built-in baselines are timed here")
            }
        }
    }
    let t = std::time::Instant::now();
    let data = mer_shared::prepared::Prepared::read(path)?;
    let read_s = t.elapsed().as_secs_f64();
    let all = mer_worker::train::fold::folds(&data, scheme);
    let chosen = &all[..folds.unwrap_or(all.len()).min(all.len())];
    let cfg = mer_shared::train_config::TrainConfig {
        device: "cpu".into(),
        threads: Some(threads),
        seed,
        ..Default::default()
    };
    let mut records = Vec::new();
    let mut times = Vec::new();
    for fold in chosen {
        let t = std::time::Instant::now();
        let r = mer_worker::baselines::run_baseline(
            &data,
            scheme,
            &mer_shared::loso::HeldOut::subject(&fold.to_string()),
            &settings,
            &cfg,
            mer_worker::train::epochs::Hooks::default(),
        )?;
        times.push(t.elapsed().as_secs_f64());
        records.extend(r.predictions.into_iter().map(|p| p.record));
    }
    let first = times.first().copied().unwrap_or(0.0);
    let rest: f64 = times.iter().skip(1).sum();
    let s = mer_shared::predictions::ScoreReport::compute(scheme, &records)?;
    println!(
        "{} on {} ({} samples): read {read_s:.2} s; {} of {} folds",
        method.display_name(),
        path.display(),
        data.samples.len(),
        chosen.len(),
        all.len()
    );
    println!(
        "first fold {first:.2} s (incl. per-file inputs), other folds {rest:.2} s ({:.3} s each), all folds {:.2} s",
        rest / (times.len().saturating_sub(1).max(1)) as f64,
        first + rest
    );
    println!(
        "pooled over these folds: UF1 {:.4}, UAR {:.4}",
        s.uf1, s.uar
    );
    Ok(())
}

/// `mer bench train`: runs the engine's training-throughput benchmark and prints it.
#[cfg(feature = "worker")]
fn bench_train(
    device: String,
    batch: usize,
    threads: Option<usize>,
    steps: usize,
    warmup: usize,
    json: bool,
    peak_tflops: Option<f64>,
) -> anyhow::Result<()> {
    let opts = mer_worker::bench::BenchOptions {
        device,
        batch,
        threads,
        steps,
        warmup,
        cfg: Default::default(),
    };
    let r = mer_worker::bench::train_throughput(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "paper-size SinC3D training, device {}, threads {}, batch {}, {} steps per mode",
        r.device, r.threads, r.batch, r.steps
    );
    for m in &r.results {
        let mem = m
            .peak_bytes
            .map(|b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "n/a".into());
        let what = if r.device == "cpu" {
            "peak RSS"
        } else {
            "peak device memory in use"
        };
        let share = peak_tflops
            .filter(|p| *p > 0.0)
            .map(|p| {
                format!(
                    " ({:.1}% of the {p} TFLOPS bf16 peak)",
                    100.0 * m.tflops / p
                )
            })
            .unwrap_or_default();
        println!(
            "mer-engine {:5} {:8.2} samples/s   {what} {mem}   {:.2} TFLOPS{share}",
            m.mode, m.samples_per_s, m.tflops
        );
    }
    if let Some(v) = r.cudnn_version {
        let (major, minor) = if v >= 10_000 {
            (v / 10_000, (v / 100) % 100)
        } else {
            (v / 1000, (v / 100) % 10)
        };
        println!("cuDNN loaded by libtorch: {major}.{minor} ({v})");
        if (major, minor) < (9, 15) {
            println!(
                "WARNING: cuDNN {major}.{minor} is older than 9.15, which fixed the bf16 conv3d slowdown of the PyTorch 2.9 era: expect a slow fast path"
            );
        }
    }
    Ok(())
}

/// `mer bench allreduce`: the data-parallel gradient collective (see the command's help).
#[cfg(feature = "worker")]
fn bench_allreduce(
    device: &str,
    replicas: usize,
    mib: f64,
    iters: usize,
    json: bool,
) -> anyhow::Result<()> {
    let elements = ((mib * 1024.0 * 1024.0 / 4.0).round() as usize).max(1);
    let r = mer_worker::bench::allreduce(device, replicas, elements, iters)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "all-reduce ({}) over {}: {} floats per replica, {} iterations: {:.3} ms each, bus bandwidth {:.1} GB/s, sums {}",
            r.backend,
            r.devices.join(","),
            r.elements,
            r.iters,
            r.seconds * 1e3,
            r.bus_gb_per_s,
            if r.correct { "exact" } else { "WRONG" }
        );
    }
    if !r.correct {
        anyhow::bail!("the all-reduce did not produce the exact sums");
    }
    Ok(())
}
