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
        } => bench_train(device, batch, threads, steps, warmup, json),
    }
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
        println!(
            "mer-engine {:5} {:8.2} samples/s   {what} {mem}",
            m.mode, m.samples_per_s
        );
    }
    Ok(())
}
