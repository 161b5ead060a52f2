//! `synth --preset composite` + `prep --composite`: exactly the official MEGC2019 composite (442 clips,
//! 68 subjects, the counts of docs/datasets.md's table). About a minute in the dev profile on 2 cores.

use mer_shared::Dataset;
use mer_worker::prep::pipeline::{inspect, prepare};
use mer_worker::synth::{generate, Preset};

#[test]
fn composite_preset_prepares_to_the_official_442_clips() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Composite, 2019, &dir.path().join("data")).unwrap();
    assert_eq!(s.clips.values().sum::<usize>(), 442);
    assert_eq!(s.subjects.values().sum::<usize>(), 68);
    let out = dir.path().join("composite.safetensors");
    let mut o = s.prep_options(&out);
    o.composite = true;
    let r = prepare(&o).unwrap();
    assert_eq!(r.samples, 442);
    assert_eq!(r.subjects, 68);
    assert_eq!(r.fallbacks, 0);
    assert!(r.skipped.is_empty());
    assert_eq!(r.megc3["smic"], [70, 51, 43]);
    assert_eq!(r.megc3["casme2"], [88, 32, 25]);
    assert_eq!(r.megc3["samm"], [92, 26, 15]);
    let ins = inspect(&out).unwrap();
    assert_eq!(ins.shape, [442, 2, 10, 112, 112]);
    assert_eq!(ins.per_subject.len(), 68);
    assert_eq!(
        ins.per_subject
            .keys()
            .filter(|(d, _)| *d == Dataset::Casme2)
            .count(),
        24
    );
    assert_eq!(
        ins.per_subject
            .keys()
            .filter(|(d, _)| *d == Dataset::Samm)
            .count(),
        28
    );
    assert_eq!(
        ins.per_subject
            .keys()
            .filter(|(d, _)| *d == Dataset::Smic)
            .count(),
        16
    );
    let text = ins.to_text();
    assert!(text.contains("samples 442, subjects 68"), "{text}");
    assert!(
        text.contains("all     negative 250, positive 109, surprise 83"),
        "{text}"
    );
    // Every sample id is a composite-list entry.
    let list: std::collections::BTreeSet<String> = mer_shared::composite::composite_list()
        .iter()
        .map(|e| format!("{}/{}/{}", e.dataset, e.subject, e.filename))
        .collect();
    let p = mer_shared::prepared::Prepared::read(&out).unwrap();
    assert!(p.samples.iter().all(|m| list.contains(&m.id)));
}
