//! Pooled UF1/UAR/Acc (and per-part scores) checked against scikit-learn on 1,200 random prediction sets
//! over the 442-clip composite list, including sets where a class is never predicted, a class is absent from
//! a part, or a part is missing altogether. Needs the project's .venv (scripts/bootstrap.sh).

use mer_shared::composite::composite_list;
use mer_shared::predictions::{PredictionRecord, ScoreReport};
use mer_shared::{Dataset, LabelScheme};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::PathBuf;

fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/bootstrap.sh",
        p.display()
    );
    p
}

#[test]
fn scores_match_scikit_learn_on_random_prediction_sets() {
    let list = composite_list();
    assert_eq!(list.len(), 442);
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sets.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let sets = 1200;
    for i in 0..sets {
        // Vary the shape of the set: all 442 clips, a part dropped, a class removed from one part, ...
        let drop_part: Option<Dataset> = if i % 7 == 3 {
            Some(Dataset::ALL[i % 3])
        } else {
            None
        };
        let strip_class: Option<(Dataset, usize)> = if i % 5 == 1 {
            Some((Dataset::ALL[(i / 5) % 3], i % 3))
        } else {
            None
        };
        let never_predicted: Option<usize> = if i % 4 == 2 {
            Some(rng.random_range(0..3))
        } else {
            None
        };
        let accuracy_bias: f64 = rng.random_range(0.0..1.0);
        let recs: Vec<PredictionRecord> = list
            .iter()
            .filter(|e| Some(e.dataset) != drop_part)
            .filter(|e| strip_class != Some((e.dataset, e.label)))
            .map(|e| {
                let mut pred = if rng.random_bool(accuracy_bias) {
                    e.label
                } else {
                    rng.random_range(0..3)
                };
                if Some(pred) == never_predicted {
                    pred = (pred + 1) % 3;
                }
                PredictionRecord {
                    dataset: e.dataset,
                    subject: e.subject.clone(),
                    filename: e.filename.clone(),
                    label: e.label,
                    pred,
                }
            })
            .collect();
        let r = ScoreReport::compute(LabelScheme::Megc3, &recs).unwrap();
        let parts: serde_json::Map<String, serde_json::Value> = r
            .parts
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    serde_json::json!({"acc": p.acc, "uf1": p.uf1, "uar": p.uar}),
                )
            })
            .collect();
        let line = serde_json::json!({
            "classes": 3,
            "labels": recs.iter().map(|r| r.label).collect::<Vec<_>>(),
            "preds": recs.iter().map(|r| r.pred).collect::<Vec<_>>(),
            "datasets": recs.iter().map(|r| r.dataset.key()).collect::<Vec<_>>(),
            "ours": {"acc": r.acc, "uf1": r.uf1, "uar": r.uar, "f1_macro": r.f1_macro, "parts": parts},
        });
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn_check.py");
    let o = std::process::Command::new(venv_python())
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{text}");
    assert!(o.status.success(), "scikit-learn disagrees:\n{text}");
    assert!(
        text.contains(&format!("agrees on {sets} prediction sets")),
        "{text}"
    );
}

#[test]
fn a_deliberately_wrong_uf1_is_caught_by_the_checker() {
    // The checker itself must be able to fail: feed it a per-fold-average-like wrong value.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let line = serde_json::json!({
        "classes": 3, "labels": [0, 1, 2, 0], "preds": [0, 1, 1, 0], "datasets": ["smic", "smic", "samm", "samm"],
        "ours": {"acc": 0.75, "uf1": 0.9, "uar": 2.0 / 3.0, "f1_macro": 0.9,
                 "parts": {"smic": {"acc": 1.0, "uf1": 2.0 / 3.0, "uar": 2.0 / 3.0}, "samm": {"acc": 0.5, "uf1": 1.0 / 3.0, "uar": 1.0 / 3.0}}},
    });
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn_check.py");
    let o = std::process::Command::new(venv_python())
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("uf1 ours 0.9"));
}
