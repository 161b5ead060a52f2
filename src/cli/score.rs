//! `mer score`: pooled MEGC2019 scoring of a prediction file.

use anyhow::Context;
use clap::Args;
use mer_shared::prediction_file::parse_any;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use mer_shared::{Dataset, LabelScheme};
use std::path::PathBuf;

/// Arguments of `mer score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A MEGC2019 prediction log (`dataset subject` fold headers, then `file true pred`) or a CSV with
    /// header `dataset,subject,filename,label,pred`. `-` reads standard input.
    pub predictions: PathBuf,
    /// Label scheme the labels belong to.
    #[arg(long, default_value = "megc3")]
    pub scheme: LabelScheme,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mer score`.
pub fn run(a: ScoreArgs) -> anyhow::Result<()> {
    let (name, text) = if a.predictions.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        ("<stdin>".to_string(), s)
    } else {
        let name = a.predictions.display().to_string();
        let text =
            std::fs::read_to_string(&a.predictions).with_context(|| format!("reading {name}"))?;
        (name, text)
    };
    let records = parse_any(&name, &text, a.scheme)?;
    let report = ScoreReport::compute(a.scheme, &records)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `mer bench score`: how fast pooled scoring is (sets/s) on random predictions over the composite.
pub fn bench(sets: usize) -> anyhow::Result<()> {
    let list = mer_shared::composite::composite_list();
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let records: Vec<Vec<PredictionRecord>> = (0..sets.min(1000))
        .map(|_| {
            list.iter()
                .map(|e| PredictionRecord {
                    dataset: e.dataset,
                    subject: e.subject.clone(),
                    filename: e.filename.clone(),
                    label: e.label,
                    pred: (next() % 3) as usize,
                })
                .collect()
        })
        .collect();
    let t = std::time::Instant::now();
    let mut acc = 0.0;
    for i in 0..sets {
        acc += ScoreReport::compute(LabelScheme::Megc3, &records[i % records.len()])?.uf1;
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "scored {sets} sets of {} predictions in {dt:.3} s: {:.0} sets/s (mean UF1 {:.4}; parts: {})",
        list.len(),
        sets as f64 / dt,
        acc / sets as f64,
        Dataset::ALL.len()
    );
    Ok(())
}
