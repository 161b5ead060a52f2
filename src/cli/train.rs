//! `mer train-fold`: trains and tests one LOSO fold with the libtorch engine and prints its result as JSON.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mer_shared::labels::LabelScheme;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::TrainConfig;
use mer_worker::mersiamc3d::engine::{small_config, train_fold};
use mer_worker::train::epochs::Hooks;
use mer_worker::train::fold::folds;
use std::path::{Path, PathBuf};

/// Training commands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train one LOSO fold (prior learning, then target learning) and test it on the held-out subject;
    /// prints the fold result (every test sample's prediction and probabilities, confusion counts, per-epoch
    /// log, timings) as JSON on stdout.
    TrainFold(TrainFoldArgs),
}

/// Arguments of `mer train-fold`.
#[derive(Debug, Args)]
pub struct TrainFoldArgs {
    /// Prepared dataset (`mer prep` output, .safetensors).
    #[arg(long)]
    pub data: PathBuf,
    /// Label scheme: megc3, objective5 or emotion5.
    #[arg(long, default_value = "megc3")]
    pub scheme: String,
    /// Held-out subject, `dataset/subject` (e.g. `casme2/sub01`); `--list-folds` shows them.
    #[arg(long, required_unless_present = "list_folds")]
    pub test_subject: Option<String>,
    /// Training settings: a TOML file holding a `TrainConfig` (or an experiment spec with a `[train]`
    /// table). Defaults: the paper's settings, or `--preset`.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Built-in settings when no `--spec` is given: `paper` (default) or `small` (small model for CPU demos).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// Device: auto, cpu, cuda or cuda:N (overrides the spec).
    #[arg(long)]
    pub device: Option<String>,
    /// Seed (overrides the spec).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Intra-op CPU threads (overrides the spec).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Per-epoch checkpoints here; rerunning with the same folder resumes a killed training.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Print the folds (`dataset/subject`) of the data under the scheme and exit.
    #[arg(long)]
    pub list_folds: bool,
}

/// Runs a training command.
pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::TrainFold(a) => train_fold_cmd(a),
    }
}

/// Reads training settings from a TOML file: a bare `TrainConfig`, or the `[train]` table of a spec.
pub fn read_config(path: &Path) -> anyhow::Result<TrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let cfg: TrainConfig = match table.get("train") {
        Some(toml::Value::Table(t)) => t.clone().try_into(),
        _ => toml::from_str(&text),
    }
    .with_context(|| format!("{}: training settings", path.display()))?;
    Ok(cfg)
}

fn train_fold_cmd(a: TrainFoldArgs) -> anyhow::Result<()> {
    let scheme: LabelScheme = a.scheme.parse()?;
    let mut cfg = match (&a.spec, a.preset.as_str()) {
        (Some(p), _) => read_config(p)?,
        (None, "paper") => TrainConfig::default(),
        (None, "small") => small_config(),
        (None, other) => bail!("unknown --preset '{other}' (expected paper or small)"),
    };
    if let Some(d) = a.device {
        cfg.device = d;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(t) = a.threads {
        cfg.threads = Some(t);
    }
    let data = Prepared::read(&a.data)?;
    if a.list_folds {
        for f in folds(&data, scheme) {
            println!("{f}");
        }
        return Ok(());
    }
    let subject = a.test_subject.context("--test-subject is required")?;
    let hooks = Hooks {
        checkpoint_dir: a.checkpoint_dir,
        ..Hooks::default()
    };
    let res = train_fold(&data, scheme, &subject, &cfg, hooks)?;
    let s = res.confusion.scores();
    tracing::info!(fold = %subject, acc = s.acc, n = s.n, total_s = res.timings.total_s, "fold done");
    println!("{}", serde_json::to_string_pretty(&res)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bare_and_spec_embedded_configs() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("bare.toml");
        std::fs::write(&bare, "seed = 3\n[target]\nfrozen_layers = 2\n").unwrap();
        let c = read_config(&bare).unwrap();
        assert_eq!((c.seed, c.target.frozen_layers), (3, 2));
        let spec = dir.path().join("spec.toml");
        std::fs::write(
            &spec,
            "name = \"x\"\n[train]\nseed = 4\n[train.model]\ninput_size = 56\n",
        )
        .unwrap();
        let c = read_config(&spec).unwrap();
        assert_eq!((c.seed, c.model.input_size), (4, 56));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[target]\nfrozen = 2\n").unwrap();
        let e = format!("{:#}", read_config(&bad).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("frozen"), "{e}");
    }
}
