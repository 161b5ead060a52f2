//! `mer report`: the Markdown + self-contained HTML report of a run folder (tables in the layout of the
//! paper's Tables 6/7 and 4/5, Fig. 4, confusion matrices, per-subject accuracy, training curves,
//! provenance, exports).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The report subcommands (flattened into `mer`).
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Write the report of a finished (or partial) run: report.md, report.html (self-contained),
    /// figures/*.png and exports/ (results.json, MEGC2019 logs, prediction CSVs).
    Report(ReportArgs),
}

/// Arguments of `mer report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder (`results.json`, `predictions/`, and where present `plan.json`, `folds.jsonl`,
    /// `provenance.json`, `spec.toml`), as `mer run` or the coordinator writes it.
    pub run_dir: PathBuf,
    /// Output folder (default: `RUN_DIR/report`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs a report subcommand.
pub fn run(cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Report(a) => report(a),
    }
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.run_dir.join("report"));
    let r = mer_coordinator::report::render_report(&a.run_dir, &out)
        .with_context(|| format!("writing the report of {} into {}", a.run_dir.display(), out.display()))?;
    println!("{}", r.markdown.display());
    println!("{}", r.html.display());
    eprintln!("{} figure(s) under {}, {} export(s) under {}", r.images.len(), out.join("figures").display(), r.exports.len(), out.join("exports").display());
    Ok(())
}
