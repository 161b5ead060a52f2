//! `mer report` end to end through the real binary, on a finished run over real pixels: the synthetic
//! `tiny` CASME II part prepared by `mer_worker::prep::pipeline`, every task run by the coordinator's sim trainer,
//! results written by the planner and the coordinator's run files. The report's tables must hold what
//! `mer score` prints for the run's prediction logs, every image must decode, and `--clip` must add the
//! key-frame strips and motion curve of a clip (the paper's Fig. 5/6).
#![cfg(feature = "worker")]

use mer_coordinator::plan::plan_spec;
use mer_coordinator::results::aggregate::aggregate;
use mer_coordinator::results::bundle::{write_run_files, RunContext};
use mer_coordinator::results::writer::write_results;
use mer_coordinator::spec::load_spec;
use mer_shared::predictions::ScoreReport;
use mer_shared::prepared::Prepared;
use mer_worker::agent::sim::{reference_run, SimTrainer};
use mer_worker::prep::pipeline::{prepare, PrepOptions};
use mer_worker::synth::{generate, Preset};
use std::path::Path;
use std::time::Duration;

mod support;

use support::mer;

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("PNG header");
    let i = r.info();
    (i.width, i.height)
}

#[test]
fn report_of_a_finished_tiny_run_matches_mer_score_and_draws_a_clip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let synth = generate(Preset::Tiny, 7, &d.join("synth")).unwrap();
    let prepared = d.join("tiny-casme2.safetensors");
    prepare(&PrepOptions {
        casme2: Some(synth.casme2.clone()),
        out: prepared.clone(),
        threads: Some(2),
        ..Default::default()
    })
    .unwrap();
    let spec_text = "name = \"tiny\"\ndataset = \"tiny-casme2.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n";
    std::fs::write(d.join("tiny.toml"), spec_text).unwrap();
    let plan = plan_spec(&load_spec(&d.join("tiny.toml")).unwrap()).unwrap();
    let results = reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &SimTrainer::new(Duration::ZERO, None),
        &d.join("work"),
    )
    .unwrap();
    let run = d.join("run");
    write_results(&run, &aggregate(&plan, &results)).unwrap();
    write_run_files(
        &run,
        &plan,
        &results,
        &RunContext {
            spec_toml: Some(spec_text.into()),
            ..Default::default()
        },
    )
    .unwrap();

    let clip = Prepared::read_meta(&prepared)
        .unwrap()
        .samples
        .iter()
        .find(|s| s.labels.contains_key("megc3"))
        .unwrap()
        .id
        .clone();
    let out = d.join("report");
    let root = synth.casme2.display().to_string();
    let (ok, stdout, stderr) = mer(&[
        "report",
        &run.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--clip",
        &clip,
        "--dataset-root",
        &root,
    ]);
    assert!(ok, "mer report failed: {stderr}");
    assert!(
        stdout.contains("report.md") && stdout.contains("report.html"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();

    for label in ["alpha=1", "alpha=2"] {
        let log = run.join("predictions").join(format!("{label}.megc.txt"));
        let (ok, json, err) = mer(&["score", "--json", &log.display().to_string()]);
        assert!(ok, "{err}");
        let s: ScoreReport = serde_json::from_str(&json).unwrap();
        let c = &s.parts["casme2"];
        // Only CASME II in this run: SMIC and SAMM are "-", the last column is all parts of the run.
        let row = format!(
            "| MERSiamC3D (this run) `{label}` | this run | 3/3 | - | {:.4} / {:.4} | - | {:.4} / {:.4} |",
            c.uf1, c.uar, s.uf1, s.uar
        );
        assert!(md.contains(&row), "missing {row}\n{md}");
        assert!(html.contains(&format!("<td>{:.4} / {:.4}</td>", s.uf1, s.uar)));
        assert!(
            md.contains(&format!(
                "| all | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                s.n, s.uf1, s.uar, s.acc, s.f1_macro
            )),
            "{md}"
        );
    }
    assert!(md.contains("all (parts in this run)"));
    assert!(md.contains("paper, Table 6 (published)"));

    // Figures: confusion matrices, alpha sweep, loss curve and the clip's Fig. 5/6 - all decode, all
    // inlined in the HTML.
    let stem = clip.replace('/', "_");
    let mut figures: Vec<_> = std::fs::read_dir(out.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    figures.sort();
    for f in [
        format!("{stem}_original.png"),
        format!("{stem}_keyframes.png"),
        format!("{stem}_motion.png"),
        "alpha_sweep.png".into(),
    ] {
        assert!(out.join("figures").join(&f).is_file(), "{f}: {figures:?}");
    }
    let pngs: Vec<_> = figures
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    for p in &pngs {
        let (w, h) = decode_png(&std::fs::read(p).unwrap());
        assert!(w > 100 && h > 100, "{}", p.display());
    }
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        pngs.len()
    );
    assert!(
        md.contains(&format!("Key-frames and motion of clip `{clip}`")),
        "{md}"
    );
    assert!(md.contains("interpolator `farneback-warp-blend`"), "{md}");
    assert!(Path::new(&out.join("exports/predictions/alpha=2.megc.txt")).is_file());

    // Keep the report as a test artifact (target/test-artifacts/tiny-report/).
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/tiny-report");
    let _ = std::fs::remove_dir_all(&keep);
    for sub in ["", "figures"] {
        std::fs::create_dir_all(keep.join(sub)).unwrap();
        for e in std::fs::read_dir(out.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, keep.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }

    // Without results.json: a clear error and a non-zero exit.
    let (ok, _, err) = mer(&["report", &d.display().to_string()]);
    assert!(!ok && err.contains("no results.json"), "{err}");
}
