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
    /// Also draw the key-frames and motion curve of this clip (the paper's Fig. 5/6), by sample id
    /// `dataset/subject/filename` (e.g. `casme2/sub01/EP02_01f`). Needs --dataset-root.
    #[cfg(feature = "worker")]
    #[arg(long, requires = "dataset_root")]
    pub clip: Option<String>,
    /// Root of the clip's dataset (the same layout `mer prep` read).
    #[cfg(feature = "worker")]
    #[arg(long)]
    pub dataset_root: Option<PathBuf>,
    /// The prepared file holding the clip (default: the run's prepared file, from provenance.json or
    /// plan.json).
    #[cfg(feature = "worker")]
    #[arg(long)]
    pub prepared: Option<PathBuf>,
}

/// Runs a report subcommand.
pub fn run(cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Report(a) => report(a),
    }
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.run_dir.join("report"));
    #[cfg(feature = "worker")]
    let extra = match (&a.clip, &a.dataset_root) {
        (Some(clip), Some(root)) => clip_blocks(&a, clip, root, &out)?,
        _ => Vec::new(),
    };
    #[cfg(not(feature = "worker"))]
    let extra = Vec::new();
    let r = mer_coordinator::report::render_report_with(&a.run_dir, &out, extra).with_context(
        || {
            format!(
                "writing the report of {} into {}",
                a.run_dir.display(),
                out.display()
            )
        },
    )?;
    println!("{}", r.markdown.display());
    println!("{}", r.html.display());
    eprintln!(
        "{} figure(s) under {}, {} export(s) under {}",
        r.images.len(),
        out.join("figures").display(),
        r.exports.len(),
        out.join("exports").display()
    );
    Ok(())
}

/// The run's prepared file: `--prepared`, else the single prepared file that provenance.json or
/// plan.json names.
#[cfg(feature = "worker")]
fn prepared_file(a: &ReportArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &a.prepared {
        return Ok(p.clone());
    }
    let run = mer_coordinator::results::bundle::load_run(&a.run_dir)?;
    let mut paths: Vec<PathBuf> = run
        .provenance
        .iter()
        .flat_map(|p| p.datasets.iter().map(|d| PathBuf::from(&d.path)))
        .collect();
    if paths.is_empty() {
        paths = run
            .plan
            .iter()
            .flat_map(|p| p.datasets.values().cloned())
            .collect();
    }
    paths.dedup();
    match paths.as_slice() {
        [one] if one.is_file() => Ok(one.clone()),
        [one] => anyhow::bail!(
            "the run's prepared file {} is not here; pass --prepared",
            one.display()
        ),
        [] => anyhow::bail!(
            "{} names no prepared file (no provenance.json / plan.json); pass --prepared",
            a.run_dir.display()
        ),
        many => anyhow::bail!(
            "the run used {} prepared files; choose one with --prepared",
            many.len()
        ),
    }
}

/// The paper's Fig. 5/6 for one clip, as report blocks.
#[cfg(feature = "worker")]
fn clip_blocks(
    a: &ReportArgs,
    clip: &str,
    root: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<Vec<mer_coordinator::results::document::Block>> {
    use mer_coordinator::report::plots::{line_png, Series};
    use mer_coordinator::results::document::Block;
    let prepared = prepared_file(a)?;
    let figs_dir = out.join("figures");
    let f = mer_worker::prep::figures::clip_figures(&mer_worker::prep::figures::FigureOptions {
        prepared: prepared.clone(),
        dataset_root: root.to_path_buf(),
        clip: clip.to_string(),
        out_dir: figs_dir,
        strip_frames: 11,
    })
    .with_context(|| format!("figures of clip {clip}"))?;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let series = vec![
        Series {
            label: "original sequence (consecutive frames)".into(),
            points: f.motion_original.clone(),
        },
        Series {
            label: format!("key-frame sequence ({})", f.method),
            points: f.motion_keyframes.clone(),
        },
    ];
    let motion = line_png(
        &format!("Motion of {clip}"),
        "frame number",
        "mean flow magnitude (px)",
        &series,
        None,
    )?;
    let times: Vec<String> = f
        .keyframe_times
        .iter()
        .map(|t| {
            if f.synthesized.contains(t) {
                format!("{t}*")
            } else {
                t.to_string()
            }
        })
        .collect();
    let mut blocks = vec![
        Block::Heading(2, format!("Key-frames and motion of clip `{clip}` (the paper's Fig. 5 and Fig. 6)")),
        Block::Para(format!(
            "Onset {}, apex {}, offset {} ({} frames), from `{}`; key-frame method `{}`, key-frame times {} (* = synthesized). \
             Motion = mean Farneback flow magnitude between consecutive frames of each sequence, plotted at the middle of each pair.",
            f.onset,
            f.apex,
            f.offset,
            f.offset - f.onset + 1,
            prepared.display(),
            f.method,
            times.join(", ")
        )),
        Block::Image { file: name(&f.original_png), caption: format!("{clip}: original sequence"), png: read(&f.original_png)? },
        Block::Image { file: name(&f.keyframes_png), caption: format!("{clip}: key-frame sequence"), png: read(&f.keyframes_png)? },
        Block::Image { file: format!("{}_motion.png", clip.replace('/', "_")), caption: format!("{clip}: motion curves (Fig. 6)"), png: motion },
    ];
    for n in &f.notes {
        blocks.push(Block::Para(format!("Note: {n}")));
    }
    Ok(blocks)
}
