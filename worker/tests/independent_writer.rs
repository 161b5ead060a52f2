//! The readers against files written by code that shares nothing with them: `tests/independent_layouts.py`
//! (openpyxl workbooks, Pillow frames, from its own description of each layout) writes small copies of every
//! layout (CASME II in both frame layouts, SAMM, SMIC-HS, SMIC-E, CAS(ME)^3 A and C, 4DME, MMEW) with their
//! quirks (SAMM's preamble and 4/5-digit frames, SMIC's missing apex, CASME II's unpadded numbers and `/`
//! apex, CAS(ME)^3's repeated filenames and dropped frames, MMEW's emotion folders), and planted faults; the readers must return
//! exactly the clips it lists (counts, names, onsets, apexes, emotions, labels, frames) and name every fault
//! with its file and row.

use mer_shared::labels::LabelScheme;
use mer_worker::prep::datasets::{read_dataset, ClipRecord, DatasetKind};
use serde_json::Value;
use std::path::Path;

fn kind(name: &str) -> DatasetKind {
    match name {
        "casme2" | "casme2_cropped" => DatasetKind::Casme2,
        "samm" => DatasetKind::Samm,
        "smic" => DatasetKind::Smic,
        "smic_e" => DatasetKind::SmicE,
        "casme3a" => DatasetKind::Casme3a,
        "casme3c" => DatasetKind::Casme3c,
        "fourdme" => DatasetKind::Fourdme,
        "mmew" => DatasetKind::Mmew,
        other => panic!("expected.json names an unknown layout {other}"),
    }
}

fn write_fixtures(out: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/independent_layouts.py");
    let o = std::process::Command::new(mer_shared::fixtures::project_python())
        .arg(&script)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("expected.json")).unwrap()).unwrap()
}

fn check_clip(got: &ClipRecord, want: &Value) {
    let id = got.id();
    let s = |k: &str| want[k].as_str().unwrap().to_string();
    let n = |k: &str| want[k].as_u64().unwrap() as u32;
    assert_eq!(got.dataset.key(), s("dataset"), "{id}");
    assert_eq!(got.subject, s("subject"), "{id}");
    assert_eq!(got.filename, s("filename"), "{id}");
    assert_eq!(got.emotion, s("emotion"), "{id}");
    assert_eq!(got.onset, n("onset"), "{id}");
    assert_eq!(got.apex, Some(n("apex")), "{id}");
    assert_eq!(got.offset, n("offset"), "{id}");
    assert_eq!(
        got.apex_estimated,
        want["apex_estimated"].as_bool().unwrap(),
        "{id}"
    );
    let frames: Vec<u64> = got.frames.iter().map(|f| f.number as u64).collect();
    let want_frames: Vec<u64> = want["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(frames, want_frames, "{id}: frames");
    assert!(got.problem.is_none(), "{id}: {:?}", got.problem);
    assert_eq!(
        got.objective_class.map(u64::from),
        want["objective_class"].as_u64(),
        "{id}: objective class"
    );
    assert_eq!(
        got.labels()
            .get(LabelScheme::Megc3.key())
            .map(|&l| l as u64),
        want["megc3"].as_u64(),
        "{id}: megc3 label of emotion {}",
        got.emotion
    );
}

#[test]
fn readers_read_the_independent_writers_layouts_exactly_and_name_each_fault() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_fixtures(dir.path());
    let layouts = expected["layouts"].as_object().unwrap();
    assert_eq!(layouts.len(), 9);
    for (name, clips) in layouts {
        let root = dir.path().join("good").join(name);
        let got = read_dataset(kind(name), &root).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = clips.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}: clip count");
        for (g, w) in got.iter().zip(want) {
            check_clip(g, w);
        }
    }
    // CAS(ME)^3 A: the renaming of a Filename used twice is recorded with the clip.
    let a = read_dataset(DatasetKind::Casme3a, &dir.path().join("good/casme3a")).unwrap();
    assert!(
        a[0].corrections[0].contains("onset 10"),
        "{:?}",
        a[0].corrections
    );
    assert!(a[2].corrections.is_empty());

    let faults = expected["faults"].as_object().unwrap();
    assert_eq!(faults.len(), 10);
    for (name, f) in faults {
        let k = kind(f["kind"].as_str().unwrap());
        let root = match f["root"].as_str() {
            Some(r) => dir.path().join(r),
            None => dir.path().join("faults").join(name),
        };
        let message = if let Some(parts) = f["error"].as_array() {
            let e = read_dataset(k, &root)
                .err()
                .unwrap_or_else(|| panic!("{name}: read without error"));
            (e.to_string(), parts)
        } else {
            let recs = read_dataset(k, &root).unwrap_or_else(|e| panic!("{name}: {e}"));
            let rec = match f["sample"].as_str() {
                Some(id) => recs.iter().find(|r| r.id() == id).unwrap(),
                None => &recs[0],
            };
            let e = rec
                .check()
                .err()
                .unwrap_or_else(|| panic!("{name}: the clip check passed"));
            (e.to_string(), f["check"].as_array().unwrap())
        };
        for p in message.1 {
            let p = p.as_str().unwrap();
            assert!(
                message.0.contains(p),
                "{name}: the error does not name '{p}': {}",
                message.0
            );
        }
    }
}
