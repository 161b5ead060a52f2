//! `mer`: the command-line interface of the MERSiamC3D experiment system.

mod cli;

use clap::{Parser, Subcommand};

/// MERSiamC3D micro-expression recognition: synthetic data, preparation, libtorch training, and LOSO
/// experiments orchestrated over gRPC (local mode by default).
#[derive(Debug, Parser)]
#[command(name = "mer", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("MER_GIT_COMMIT"), ")"), about, long_about = None)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `mer=debug`.
    #[arg(long, global = true, env = "MER_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score predictions (MEGC2019 log or CSV) with pooled UF1/UAR, per dataset part.
    Score(cli::score::ScoreArgs),
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Experiments: local mode (`mer run`), and `coordinator`, `worker`, `submit`, `status`, `cancel`,
    /// `results` for a cluster.
    #[command(flatten)]
    Cluster(cli::cluster::ClusterCommand),
    /// Reports of runs (`mer report`).
    #[command(flatten)]
    Report(cli::report::ReportCommand),
    /// Synthetic datasets and data preparation (`mer synth`, `mer prep`).
    #[cfg(feature = "worker")]
    #[command(flatten)]
    Data(cli::data::DataCommand),
    /// Training one LOSO fold with the libtorch engine (`mer train-fold`).
    #[cfg(feature = "worker")]
    #[command(flatten)]
    Train(cli::train::TrainCommand),
    /// Print a shell completion script (`mer completions bash > /etc/bash_completion.d/mer`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script for `shell` to stdout (a closed pipe, as with `| head`, is not an error).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mer", &mut buf);
    match std::io::stdout().write_all(&buf) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Score(a) => cli::score::run(a),
        Command::Bench(b) => cli::bench::run(b),
        Command::Cluster(c) => cli::cluster::run(c),
        Command::Report(r) => cli::report::run(r),
        #[cfg(feature = "worker")]
        Command::Data(d) => cli::data::run(d),
        #[cfg(feature = "worker")]
        Command::Train(t) => cli::train::run(t),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
