//! The realistic synthetic presets (`mer synth --preset realistic-tiny`): real face photographs, FACS
//! actions, label-free nuisances and noisy annotations, written in the real layouts and read back by the
//! real readers. Needs scikit-image's LFW subset from the project's `.venv` (scripts/bootstrap.sh).

use mer_shared::prepared::Prepared;
use mer_shared::Dataset;
use mer_worker::prep::pipeline::prepare;
use mer_worker::synth::{generate, Preset, SynthOptions};
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn realistic_tiny_is_read_by_the_real_readers_and_records_its_noise() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::RealisticTiny, 11, &dir.path().join("data")).unwrap();
    assert_eq!(s.clips.values().sum::<usize>(), 28);
    assert_eq!(s.subjects.values().sum::<usize>(), 9);
    assert!(s
        .faces
        .as_ref()
        .is_some_and(|f| f.ends_with("lfw_subset.npy")));

    // One real face per subject, never shared between subjects.
    let mut face_of: BTreeMap<(Dataset, String), usize> = BTreeMap::new();
    for t in &s.truth {
        let r = t.realistic.as_ref().expect("realistic truth recorded");
        let f = *face_of
            .entry((t.dataset, t.subject.clone()))
            .or_insert(r.face.0);
        assert_eq!(f, r.face.0, "{t:?}");
        assert!((96.0..124.0).contains(&r.face.1));
        // The true timing is ordered and the annotation is recorded next to it.
        assert!(
            r.timing.onset < r.timing.apex && r.timing.apex < r.timing.offset,
            "{r:?}"
        );
        assert_eq!(t.apex as f32 - r.timing.apex, r.apex_error);
        assert_eq!(t.onset as f32 - r.timing.onset, r.onset_error);
        assert!(!r.aus.is_empty() && !r.actions.is_empty());
        assert!((0.25..=2.5).contains(&t.intensity), "{t:?}");
    }
    let faces: BTreeSet<usize> = face_of.values().copied().collect();
    assert_eq!(faces.len(), 9);
    // Annotation noise is present: some apexes and onsets are off the truth, by a few frames.
    let real: Vec<_> = s
        .truth
        .iter()
        .filter_map(|t| t.realistic.as_ref())
        .collect();
    assert!(real.iter().filter(|r| r.apex_error != 0.0).count() >= 10);
    assert!(real.iter().any(|r| r.onset_error != 0.0));
    assert!(real.iter().all(|r| r.apex_error.abs() <= 20.0));
    // Nuisances are drawn whatever the class: blinks in some clips, head drift in all.
    assert!(real.iter().any(|r| r.nuisances.blink.is_some()));
    assert!(real.iter().any(|r| r.nuisances.blink.is_none()));
    assert!(real
        .iter()
        .all(|r| r.nuisances.head.drift_px.0.abs() <= 1.5 && r.nuisances.noise_sigma > 0.0));
    // SAMM frames are grey, CASME II's colour, as the real sets.
    let first = |d: &std::path::Path| {
        let mut v: Vec<_> = walk(d)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        v.sort();
        v[0].clone()
    };
    let samm = opencv::imgcodecs::imread(
        first(&s.samm).to_str().unwrap(),
        opencv::imgcodecs::IMREAD_UNCHANGED,
    )
    .unwrap();
    let casme = opencv::imgcodecs::imread(
        first(&s.casme2).to_str().unwrap(),
        opencv::imgcodecs::IMREAD_UNCHANGED,
    )
    .unwrap();
    use opencv::prelude::MatTraitConst;
    assert_eq!((samm.channels(), casme.channels()), (1, 3));

    // The real readers and prep read it: every face found by the Haar detector, the workbook's (noisy)
    // apex is what the prepared file holds, SMIC's apex is the estimated middle frame.
    let out = dir.path().join("realistic.safetensors");
    let r = prepare(&s.prep_options(&out)).unwrap();
    assert_eq!(r.samples, 28);
    assert_eq!(r.fallbacks, 0, "every face found");
    assert_eq!(r.megc3["casme2"], [3, 3, 3]);
    let p = Prepared::read(&out).unwrap();
    for m in &p.samples {
        let t = s
            .truth
            .iter()
            .find(|t| t.dataset == m.dataset && t.filename == m.filename)
            .unwrap();
        assert_eq!(
            (m.onset, m.apex, m.offset),
            (t.onset, t.apex, t.offset),
            "{}",
            m.id
        );
        assert_eq!(m.apex_estimated, m.dataset == Dataset::Smic);
    }
}

#[test]
fn the_workbooks_carry_the_drawn_action_units_and_a_seed_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions::new(Preset::RealisticTiny, 3);
    let a = mer_worker::synth::generate_with(&opts, &dir.path().join("a")).unwrap();
    let b = mer_worker::synth::generate_with(&opts, &dir.path().join("b")).unwrap();
    assert_eq!(a.truth, b.truth);
    let frame = |root: &std::path::Path| {
        let mut v: Vec<_> = walk(root);
        v.sort();
        let p = v
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "jpg"))
            .unwrap();
        std::fs::read(p).unwrap()
    };
    assert_eq!(frame(&a.casme2), frame(&b.casme2), "same seed, same bytes");
    // Column H of the CASME II coding workbook holds the action units.
    let rows =
        mer_worker::prep::datasets::read_table(&a.casme2.join("CASME2-coding-20140508.xlsx"))
            .unwrap();
    assert_eq!(rows[0].cell(7), "Action Units");
    let written: BTreeSet<String> = rows[1..].iter().map(|r| r.cell(7).to_string()).collect();
    let drawn: BTreeSet<String> = a
        .truth
        .iter()
        .filter(|t| t.dataset == Dataset::Casme2)
        .map(|t| t.realistic.as_ref().unwrap().aus.clone())
        .collect();
    assert_eq!(written, drawn);
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
