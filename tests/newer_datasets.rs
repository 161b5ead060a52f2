//! The newer datasets end to end with every real part, through local mode: `mer synth --newer-parts` (tiny
//! CAS(ME)^3 A and C, 4DME and MMEW copies in their release layouts beside the composite's three), `mer
//! prep` over all seven roots, then the two shipped specs: `examples/five_datasets_tiny.toml` (a LOSO
//! composite of CASME II + SAMM + CAS(ME)^3 A + 4DME + MMEW) and `examples/lodo_tiny.toml` (leave one dataset
//! out over the six labelled parts), each trained with libtorch by local worker processes. Checks that every
//! fold finished, that results.json scores each part and names the protocol, that the per-part scores are
//! what `mer score` computes from the prediction log, and that `mer report` names the protocol.
#![cfg(feature = "worker")]

use std::path::Path;

mod support;

use support::mer_in as mer;

/// The shipped example `name`, pointed at `dataset`.
fn example(name: &str, dataset: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("dataset =") {
                format!("dataset = \"{dataset}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `spec` in `run/` and returns its results.json, after checking that it is whole and that every
/// sweep point scores `parts` (and only them) with `mer score`'s numbers.
fn run(d: &Path, spec: &str, run: &str, folds: u64, parts: &[&str]) -> serde_json::Value {
    mer(
        &["run", spec, "--workers", "2", "--run-dir", run, "--quiet"],
        d,
    );
    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(run).join("results.json")).unwrap())
            .unwrap();
    assert_eq!(res["partial"], false, "{res}");
    for p in res["sweep_points"].as_array().unwrap() {
        assert_eq!(
            (p["folds_done"].as_u64(), p["folds_total"].as_u64()),
            (Some(folds), Some(folds))
        );
        let got: Vec<&str> = p["scores"]["parts"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = parts.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{spec}");
        for part in parts {
            assert_eq!(p["scores"]["parts"][part]["n"], 9, "{spec}: {part}");
        }
        let label = p["label"].as_str().unwrap();
        let log = d.join(run).join(format!("predictions/{label}.megc.txt"));
        let scored: serde_json::Value =
            serde_json::from_str(&mer(&["score", log.to_str().unwrap(), "--json"], d)).unwrap();
        assert_eq!(scored["parts"], p["scores"]["parts"], "{spec}");
        assert_eq!(scored["uf1"], p["scores"]["uf1"], "{spec}");
    }
    res
}

#[test]
fn a_five_dataset_loso_composite_and_a_lodo_run_on_the_newer_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mer(
        &[
            "synth",
            "--preset",
            "tiny",
            "--newer-parts",
            "--seed",
            "3",
            "--out",
            "synth",
        ],
        d,
    );
    let prep = mer(
        &[
            "prep",
            "--casme2",
            "synth/casme2",
            "--samm",
            "synth/samm",
            "--smic",
            "synth/smic",
            "--casme3a",
            "synth/casme3a",
            "--casme3c",
            "synth/casme3c",
            "--fourdme",
            "synth/4dme",
            "--mmew",
            "synth/mmew",
            "--out",
            "all.safetensors",
        ],
        d,
    );
    assert!(prep.contains("wrote 64 samples, 21 subjects"), "{prep}");
    let inspect = mer(&["prep", "inspect", "all.safetensors"], d);
    for line in [
        "casme3a    10 clips   3 subjects",
        "4dme       10 clips   3 subjects",
    ] {
        assert!(inspect.contains(line), "{inspect}");
    }

    std::fs::write(
        d.join("five.toml"),
        example("five_datasets_tiny.toml", "all.safetensors"),
    )
    .unwrap();
    let five = run(
        d,
        "five.toml",
        "five",
        15,
        &["casme2", "samm", "casme3a", "4dme", "mmew"],
    );
    assert_eq!(five["protocol"], "loso");
    assert_eq!(five["parts"].as_array().unwrap().len(), 5);

    std::fs::write(
        d.join("lodo.toml"),
        example("lodo_tiny.toml", "all.safetensors"),
    )
    .unwrap();
    let parts = ["smic", "casme2", "samm", "casme3a", "4dme", "mmew"];
    let lodo = run(d, "lodo.toml", "lodo", 6, &parts);
    assert_eq!(lodo["protocol"], "lodo");
    // The report names the protocol and scores every part.
    mer(&["report", "lodo", "--out", "lodo/report"], d);
    let md = std::fs::read_to_string(d.join("lodo/report/report.md")).unwrap();
    assert!(md.contains("leave one dataset out"), "{md}");
    for name in ["CAS(ME)^3 A", "4DME", "MMEW"] {
        assert!(md.contains(name), "{name} missing from the report");
    }
}
