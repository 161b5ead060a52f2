//! `mer score` end to end through the real binary: both input formats, the constant-predictor reference
//! numbers on the official composite list, and clear errors with a non-zero exit on malformed input.

use mer_shared::composite::composite_list;
use mer_shared::megc_log;
use mer_shared::predictions::{to_csv, PredictionRecord};
use std::path::Path;

mod support;

use support::mer;

fn constant_negative() -> Vec<PredictionRecord> {
    composite_list()
        .into_iter()
        .map(|e| PredictionRecord {
            dataset: e.dataset,
            subject: e.subject,
            filename: e.filename,
            label: e.label,
            pred: 0,
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn constant_negative_predictor_gives_the_reference_numbers_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let recs = constant_negative();
    let csv = write(dir.path(), "p.csv", &to_csv(&recs));
    let log = write(dir.path(), "p.txt", &megc_log::write(&recs));
    let (ok, out_csv, err) = mer(&["score", &csv, "--json"]);
    assert!(ok, "{err}");
    let (ok, out_log, err) = mer(&["score", &log, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(out_csv, out_log);
    let v: serde_json::Value = serde_json::from_str(&out_csv).unwrap();
    assert_eq!(v["n"], 442);
    assert!((v["acc"].as_f64().unwrap() - 0.5656).abs() < 5e-5);
    assert!((v["uar"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    for part in ["smic", "casme2", "samm"] {
        assert!(v["parts"][part]["n"].as_u64().unwrap() > 0, "{part}");
    }
    assert_eq!(v["parts"]["smic"]["n"], 164);
    assert_eq!(v["per_class"]["negative"]["support"], 250);
    // The human-readable table too.
    let (ok, table, _) = mer(&["score", &csv]);
    assert!(ok);
    assert!(
        table.contains("0.5656") && table.contains("0.3333"),
        "{table}"
    );
}

#[test]
fn parts_absent_from_the_input_are_absent_from_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<_> = constant_negative()
        .into_iter()
        .filter(|r| r.dataset.key() == "samm")
        .collect();
    let csv = write(dir.path(), "samm.csv", &to_csv(&recs));
    let (ok, out, err) = mer(&["score", &csv, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n"], 133);
    assert!(v["parts"].get("smic").is_none() && v["parts"].get("casme2").is_none());
}

#[test]
fn malformed_inputs_fail_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bad_header.csv",
            "dataset,subject,file,label,pred\nsmic,s01,a,0,0\n",
            ":1: header",
        ),
        (
            "unknown_dataset.csv",
            "dataset,subject,filename,label,pred\ncasme9,sub01,a,0,0\n",
            ":2: dataset",
        ),
        (
            "non_integer.csv",
            "dataset,subject,filename,label,pred\nsmic,s01,a,zero,0\n",
            ":2: label",
        ),
        (
            "out_of_scheme.csv",
            "dataset,subject,filename,label,pred\nsmic,s01,a,0,3\n",
            ":2: pred",
        ),
        (
            "truncated.csv",
            "dataset,subject,filename,label,pred\nsmic,s01,a,0,0\nsmic,s01,b,1\n",
            ":3: line",
        ),
        (
            "truncated_log.txt",
            "smic s01\na 0 0\nb 1 1 2\n",
            ":3: line",
        ),
        (
            "unknown_dataset_log.txt",
            "casme9 sub01\nEP01 0 0\n",
            ":1: dataset",
        ),
        ("non_integer_log.txt", "smic s01\na 0 x\n", ":2: pred"),
        ("empty.csv", "", "empty file"),
    ];
    for (name, text, expect) in cases {
        let path = write(dir.path(), name, text);
        let (ok, out, err) = mer(&["score", &path, "--json"]);
        assert!(!ok, "{name} was accepted: {out}");
        assert!(
            err.contains(name) && err.contains(expect),
            "{name}: expected '{expect}' in: {err}"
        );
    }
    let (ok, _, err) = mer(&["score", "/nonexistent/p.csv"]);
    assert!(!ok && err.contains("/nonexistent/p.csv"), "{err}");
}

#[test]
fn every_subcommand_has_help() {
    let (ok, out, _) = mer(&["--help"]);
    assert!(ok);
    let subcommands: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(subcommands.contains(&"score".to_string()), "{out}");
    for c in subcommands {
        let (ok, out, err) = mer(&[&c, "--help"]);
        assert!(ok && out.contains("Usage:"), "mer {c} --help: {err}");
    }
}
