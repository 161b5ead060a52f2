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
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Score { sets } => super::score::bench(sets),
    }
}
