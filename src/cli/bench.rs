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
    }
}
