//! Report tests on a finished run built the way the coordinator builds it: a sim dataset, a spec, every
//! task run by the deterministic sim trainer, then the planner's `aggregate` + `write_results` and the
//! run files of [`crate::results::bundle::write_run_files`].

use super::render_report;
use crate::plan::plan_spec;
use crate::results::aggregate::aggregate;
use crate::results::bundle::{load_run, write_run_files, RunContext};
use crate::results::writer::write_results;
use crate::spec::load_spec;
use crate::test_support::decode_png as decode;
use base64::Engine;
use mer_shared::prediction_file::parse_any;
use mer_shared::predictions::ScoreReport;
use mer_shared::LabelScheme;
use mer_worker::agent::sim::{reference_run, write_sim_dataset, SimTrainer};
use std::path::Path;
use std::time::Duration;

/// Builds a finished run folder under `dir/run` for a spec with `sweep` and returns it.
pub(crate) fn finished_run(dir: &Path, sweep: &str) -> std::path::PathBuf {
    finished_run_with(dir, sweep, false)
}

/// [`finished_run`], with the baselines' optional groups in the dataset when `groups` is set.
fn finished_run_with(dir: &Path, sweep: &str, groups: bool) -> std::path::PathBuf {
    write_sim_dataset(&dir.join("data.safetensors"), 3, 3).unwrap();
    if groups {
        let path = dir.join("data.safetensors");
        let mut p = mer_shared::prepared::Prepared::read(&path).unwrap();
        let n = p.samples.len();
        p.info.apex_flow = Some(mer_shared::prepared::ApexFlowInfo {
            size: 4,
            channels: vec!["u".into(), "v".into(), "strain".into()],
        });
        p.info.tim10 = Some(mer_shared::prepared::Tim10Info {
            size: 4,
            frames: 10,
        });
        p.groups.apex_flow = Some(vec![0.0; n * 3 * 16]);
        p.groups.tim10 = Some(vec![0; n * 10 * 16]);
        p.write(&path).unwrap();
    }
    let text = format!("name = \"tiny\"\ndescription = \"report test\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n[train]\nseed = 7\n[sweep]\n{sweep}");
    let spec_path = dir.join("tiny.toml");
    std::fs::write(&spec_path, &text).unwrap();
    let plan = plan_spec(&load_spec(&spec_path).unwrap()).unwrap();
    let results = reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &SimTrainer::new(Duration::ZERO, None),
        &dir.join("work"),
    )
    .unwrap();
    let res = aggregate(&plan, &results);
    assert!(!res.partial);
    let run = dir.join("run");
    write_results(&run, &res).unwrap();
    let ctx = RunContext {
        experiment_id: Some("e1".into()),
        spec_toml: Some(text),
        ..Default::default()
    };
    write_run_files(&run, &plan, &results, &ctx).unwrap();
    run
}

#[test]
fn report_tables_hold_the_scores_of_the_prediction_logs_and_every_image_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path(), "alpha = [1, 2, 4]\n");
    let out = render_report(&run, &run.join("report")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    let data = load_run(&run).unwrap();
    assert_eq!(data.results.sweep_points.len(), 3);
    for sp in &data.results.sweep_points {
        // What `mer score predictions/<label>.megc.txt` computes.
        let f = run
            .join("predictions")
            .join(format!("{}.megc.txt", sp.label));
        let text = std::fs::read_to_string(&f).unwrap();
        let s = ScoreReport::compute(
            LabelScheme::Megc3,
            &parse_any("log", &text, LabelScheme::Megc3).unwrap(),
        )
        .unwrap();
        assert_eq!(s.n, 27);
        assert_eq!(&out.scores[&sp.index], &s);
        let p = |k: &str| format!("{:.4} / {:.4}", s.parts[k].uf1, s.parts[k].uar);
        let row = format!(
            "| MERSiamC3D (this run) `{}` | this run | 9/9 | {} | {} | {} | {:.4} / {:.4} |",
            sp.label,
            p("smic"),
            p("casme2"),
            p("samm"),
            s.uf1,
            s.uar
        );
        assert!(md.contains(&row), "Table 6 row missing: {row}\n{md}");
        assert!(
            html.contains(&format!("<td>{:.4} / {:.4}</td>", s.uf1, s.uar)),
            "HTML lacks {}",
            sp.label
        );
        // Per-point detail and the per-class counts.
        assert!(
            md.contains(&format!(
                "| all | 27 | {:.4} | {:.4} | {:.4} | {:.4} |",
                s.uf1, s.uar, s.acc, s.f1_macro
            )),
            "{md}"
        );
        // Fig. 4 table row for this alpha.
        let alpha = sp.values["alpha"].as_f64().unwrap();
        assert!(
            md.contains(&format!(
                "| {alpha} | - | 9/9 | {} | {} | {} | {:.4} / {:.4} |",
                p("smic"),
                p("casme2"),
                p("samm"),
                s.uf1,
                s.uar
            )),
            "{md}"
        );
    }
    // The paper's numbers are there, labelled as such.
    assert!(md.contains("| MERSiamC3D | paper, Table 6 (published) | 68 | 0.7356 / 0.7598 | 0.8818 / 0.8763 | 0.7475 / 0.7280 | 0.8068 / 0.7986 |"), "{md}");
    assert!(html.contains("<tr class=\"paper\">"));
    // No Table 7 without a frozen-layers or prior axis.
    assert!(!md.contains("Table 7"));
    // Images: 3 confusion matrices, the alpha sweep, the two loss curves (prior stage is not in target
    // results; the sim logs the target stage only) - every one exists, decodes, and is inlined in the HTML.
    let names: Vec<String> = out
        .images
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(names.contains(&"alpha_sweep.png".to_string()), "{names:?}");
    assert!(
        names.contains(&"confusion_alpha=1.png".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"loss_target.png".to_string()), "{names:?}");
    assert_eq!(names.len(), 5, "{names:?}");
    for p in &out.images {
        let (w, h) = decode(&std::fs::read(p).unwrap());
        assert!(w > 100 && h > 100, "{}", p.display());
        assert!(md.contains(&format!(
            "](figures/{})",
            p.file_name().unwrap().to_string_lossy()
        )));
    }
    let uris: Vec<&str> = html
        .split("src=\"data:image/png;base64,")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(uris.len(), out.images.len());
    for u in uris {
        decode(&base64::engine::general_purpose::STANDARD.decode(u).unwrap());
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained: no external asset"
    );
    // Provenance: spec hash, seed, dataset preparation, devices, the spec text.
    assert!(md.contains(&format!("`{}`", data.results.spec_hash)));
    assert!(md.contains("base seed(s) | 7 "), "{md}");
    assert!(md.contains("interpolator `sim`"), "{md}");
    assert!(md.contains("devices (target folds) | sim x 27"), "{md}");
    assert!(md.contains("description = \"report test\""));
    // The leakage premium: a labelled section with each point's oracle-epoch score (the simulated
    // trainer's earlier epochs differ from its last, so the oracle has a real choice).
    assert!(
        md.contains("## Leakage premium (diagnostic, not a result)"),
        "{md}"
    );
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        !summary.contains("selected UF1"),
        "no nested selection, no selected column: {summary}"
    );
    let d = data
        .results
        .diagnostics
        .as_ref()
        .expect("diagnostics in results.json");
    assert_eq!(d.oracle_epoch.len(), data.results.sweep_points.len());
    for (o, sp) in d.oracle_epoch.iter().zip(&data.results.sweep_points) {
        let s = o
            .scores
            .as_ref()
            .expect("every sim fold has per-epoch predictions");
        assert!(md.contains(&format!("{:.4} / {:.4}", s.uf1, s.uar)), "{md}");
        let clean = sp.scores.as_ref().unwrap();
        assert!((o.premium_uf1.unwrap() - (s.uf1 - clean.uf1)).abs() < 1e-12);
        // Per fold the oracle is at least as accurate as the final epoch, so pooled accuracy cannot drop.
        assert!(s.acc >= clean.acc);
        assert_eq!(o.chosen_epochs.len(), 9);
    }
    // Per-subject accuracy covers all 9 subjects.
    assert!(
        md.contains("| casme2/sub01 |")
            && md.contains("| samm/006 |")
            && md.contains("| smic/s03 |"),
        "{md}"
    );
    // Exports: the planner's files copied, and the per-sample CSV with probabilities.
    for f in [
        "results.json",
        "predictions/alpha=1.megc.txt",
        "predictions/alpha=1.csv",
        "samples.csv",
    ] {
        assert!(run.join("report/exports").join(f).is_file(), "{f}");
    }
    let samples = std::fs::read_to_string(run.join("report/exports/samples.csv")).unwrap();
    assert!(samples.starts_with("sweep_point,dataset,subject,filename,label,pred,correct,p_negative,p_positive,p_surprise\n"));
    assert_eq!(samples.lines().count(), 1 + 3 * 27);
}

#[test]
fn frozen_layer_sweeps_get_the_table7_layout() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(
        dir.path(),
        "prior = [true, false]\nfrozen_layers = [0, 2]\n",
    );
    let out = render_report(&run, &dir.path().join("elsewhere")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("(the paper's Table 7)"), "{md}");
    assert!(
        md.contains("| k = 0 frozen | - | 9/9 |") && md.contains("| k = 2 frozen | - | 9/9 |"),
        "{md}"
    );
    assert!(
        md.contains("| no prior learning (random init) | - | 9/9 |"),
        "{md}"
    );
    assert!(!md.contains("Fig. 4"));
    // One seed: no table over seeds.
    assert!(!md.contains("Mean over the"), "{md}");
}

#[test]
fn table7_over_seeds_averages_each_settings_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(
        dir.path(),
        "seeds = [1, 2]\nprior = [true, false]\nfrozen_layers = [0, 2]\n",
    );
    let out = render_report(&run, &dir.path().join("elsewhere")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("Mean over the 2 training seeds (1, 2)"), "{md}");
    let data = load_run(&run).unwrap();
    let uf1 = |label: &str| {
        data.results
            .sweep_points
            .iter()
            .find(|s| s.label == label)
            .and_then(|s| s.scores.as_ref())
            .map(|s| (s.uf1, s.uar))
            .unwrap_or_else(|| panic!("{label}"))
    };
    for (setting, a, c) in [
        (
            "k = 2 frozen",
            "prior=true,frozen=2,seed=1",
            "prior=true,frozen=2,seed=2",
        ),
        (
            "no prior learning (random init)",
            "prior=false,seed=1",
            "prior=false,seed=2",
        ),
    ] {
        let (a, c) = (uf1(a), uf1(c));
        let row = format!("| {setting} | 2/2 |",);
        let line = md
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("no row {row}: {md}"));
        let all = format!("{:.4} / {:.4}", (a.0 + c.0) / 2.0, (a.1 + c.1) / 2.0);
        let per_seed = format!("{:.4}, {:.4} |", a.0, c.0);
        assert!(line.contains(&all) && line.ends_with(&per_seed), "{line}");
    }
}

#[test]
fn a_report_refuses_results_that_disagree_with_their_prediction_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path(), "alpha = [1]\n");
    // Tamper with one prediction: results.json no longer matches what `mer score` would say.
    let f = run.join("predictions/alpha=1.megc.txt");
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let i = lines
        .iter()
        .position(|l| l.split_whitespace().count() == 3)
        .unwrap();
    let mut parts: Vec<String> = lines[i].split_whitespace().map(String::from).collect();
    parts[2] = ((parts[2].parse::<usize>().unwrap() + 1) % 3).to_string();
    lines[i] = parts.join(" ");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let e = render_report(&run, &run.join("report"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("alpha=1") && e.contains("prediction file"),
        "{e}"
    );
    let e = render_report(dir.path(), &dir.path().join("r"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no results.json"), "{e}");
}

#[test]
fn a_partial_run_is_reported_as_partial() {
    let dir = tempfile::tempdir().unwrap();
    write_sim_dataset(&dir.path().join("data.safetensors"), 3, 3).unwrap();
    std::fs::write(dir.path().join("p.toml"), "name = \"p\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n").unwrap();
    let plan = plan_spec(&load_spec(&dir.path().join("p.toml")).unwrap()).unwrap();
    let all = reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &SimTrainer::new(Duration::ZERO, None),
        &dir.path().join("work"),
    )
    .unwrap();
    // Two folds of the first point only.
    let keys: Vec<String> = plan.targets_of(0).take(2).map(|t| t.key.clone()).collect();
    let some: std::collections::BTreeMap<_, _> =
        all.into_iter().filter(|(k, _)| keys.contains(k)).collect();
    let run = dir.path().join("run");
    write_results(&run, &aggregate(&plan, &some)).unwrap();
    write_run_files(&run, &plan, &some, &RunContext::default()).unwrap();
    let out = render_report(&run, &run.join("report")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(
        md.contains("| MERSiamC3D (this run) `alpha=1` (partial 2/9 folds) | this run | 2/9 |"),
        "{md}"
    );
    assert!(md.contains("| MERSiamC3D (this run) `alpha=2` (partial 0/9 folds) | this run | 0/9 | - | - | - | - |"), "{md}");
    assert!(
        md.contains("PARTIAL results") && md.contains("No fold finished yet."),
        "{md}"
    );
    assert_eq!(out.scores.len(), 1);
}

#[test]
fn a_method_sweep_reports_a_measured_row_per_method_and_compares_them_per_part() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run_with(
        dir.path(),
        "method = [\"mersiamc3d\", \"ststnet\", \"lbptop_svm\"]\n",
        true,
    );
    let out = render_report(&run, &run.join("report")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    let data = load_run(&run).unwrap();
    let names: Vec<&str> = data
        .results
        .sweep_points
        .iter()
        .map(|s| s.method.display_name())
        .collect();
    assert_eq!(names, ["MERSiamC3D", "STSTNet", "LBP-TOP + SVM"]);
    for sp in &data.results.sweep_points {
        let s = &out.scores[&sp.index];
        let row = format!(
            "| {} (this run) `{}` | this run | 9/9 |",
            sp.method.display_name(),
            sp.label
        );
        assert!(md.contains(&row), "Table 6 row missing: {row}\n{md}");
        assert!(md.contains(&format!("{:.4} / {:.4}", s.uf1, s.uar)));
    }
    // The published rows stay, labelled as published.
    assert!(
        md.contains("| STSTNet | paper, Table 6 (published) | 68 |"),
        "{md}"
    );
    assert!(md.contains("## Methods on the same folds"), "{md}");
    for f in ["methods_uf1.png", "methods_uar.png"] {
        let (w, h) = decode(&std::fs::read(run.join("report").join("figures").join(f)).unwrap());
        assert!(w > 300 && h > 200, "{f}");
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("| `method=ststnet` | STSTNet | 9/9 |"),
        "{summary}"
    );
}

#[test]
fn prior_curves_come_from_the_artifacts_summaries_and_reach_the_report() {
    use crate::results::bundle::{read_prior_record, PriorRecord};
    use mer_shared::fold::EpochLog;
    let dir = tempfile::tempdir().unwrap();
    let ep = |epoch: usize, loss: f64, monitor: f64, unseen: f64| EpochLog {
        stage: "prior".into(),
        epoch,
        loss,
        monitor: Some(monitor),
        unseen: Some(unseen),
        samples_per_s: 1.0,
        test_predictions: vec![],
        layers: vec![],
    };
    // What the engine writes: the tower weights with a `summary` JSON in the metadata.
    let summary = serde_json::json!({
        "epochs": [ep(0, 0.69, 0.5, 0.5), ep(1, 0.30, 0.9, 0.7)],
        "unseen_subjects": ["casme2/sub02"],
        "other": "fields are ignored",
    });
    let art = dir.path().join("prior.safetensors");
    let meta: std::collections::HashMap<String, String> =
        [("summary".to_string(), summary.to_string())].into();
    let data = [0u8; 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    safetensors::tensor::serialize_to_file([("conv1.weight", view)], Some(meta), &art).unwrap();
    let a = read_prior_record(&art, "k1", "casme2/sub01").unwrap();
    assert_eq!((a.epochs.len(), a.unseen_subjects.len()), (2, 1));
    assert!(read_prior_record(&dir.path().join("missing"), "k", "f").is_none());
    let b = PriorRecord {
        task_key: "k2".into(),
        fold: "casme2/sub03".into(),
        epochs: vec![ep(0, 0.71, 0.5, 0.6), ep(1, 0.10, 1.0, 0.9)],
        unseen_subjects: vec![],
    };
    let run = finished_run(dir.path(), "alpha = [1]\n");
    let ctx = RunContext {
        priors: [("k1".to_string(), a), ("k2".to_string(), b)].into(),
        ..Default::default()
    };
    let plan: crate::plan::Plan =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    write_run_files(&run, &plan, &Default::default(), &ctx).unwrap();
    assert_eq!(load_run(&run).unwrap().priors.len(), 2);
    let out = render_report(&run, &run.join("report")).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    // Means over the two folds per epoch.
    assert!(md.contains("| 1 | 0.7000 | 0.5000 | 0.5500 |"), "{md}");
    assert!(md.contains("| 2 | 0.2000 | 0.9500 | 0.8000 |"), "{md}");
    assert!(out
        .images
        .iter()
        .any(|p| p.ends_with("prior_learning.png") && p.is_file()));
}
