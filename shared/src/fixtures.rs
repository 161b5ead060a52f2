//! Builders for synthetic prepared data: the per-sample metadata and preparation record of a dataset
//! that no `mer prep` made (the simulated trainer's dataset, benchmarks, tests). One place fills the
//! fields nobody looks at, so a field added to [`SampleMeta`] or [`PrepInfo`] is added here once;
//! callers override what matters to them with struct-update syntax
//! (`SampleMeta { onset: 0, ..fixtures::sample(...) }`). Also where tests find the project's Python.

use crate::prepared::{KeyframeFill, PrepInfo, SampleMeta};
use crate::Dataset;
use std::collections::BTreeMap;

/// The sample `dataset/subject/filename` with `labels` (scheme key -> class). Its annotation is a
/// placeholder: onset 1, apex 5, offset 9 (annotated, not estimated), key-frames all at 1, emotion `x`,
/// a 1x1 face box, no source frames, no corrections.
pub fn sample(
    dataset: Dataset,
    subject: &str,
    filename: &str,
    labels: &[(&str, usize)],
) -> SampleMeta {
    SampleMeta {
        id: format!("{dataset}/{subject}/{filename}"),
        dataset,
        subject: subject.to_string(),
        filename: filename.to_string(),
        emotion: "x".into(),
        objective_class: None,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
        onset: 1,
        apex: 5,
        offset: 9,
        apex_estimated: false,
        keyframe_times: vec![1.0; 11],
        source_frames: vec![],
        crop_box: [0, 0, 1, 1],
        corrections: vec![],
    }
}

/// The preparation record of a synthetic file made by `made_by` (its interpolator, crop and version
/// fields): adaptive key-frames with Algorithm 1's fill, `frames` flows of u and v at `size` pixels,
/// no Farneback parameters.
pub fn prep_info(made_by: &str, size: u32, frames: u32) -> PrepInfo {
    PrepInfo {
        keyframes: "adaptive".into(),
        interpolator: made_by.into(),
        flow_params: BTreeMap::new(),
        size,
        frames,
        channels: vec!["u".into(), "v".into()],
        crop: made_by.into(),
        mer_version: made_by.into(),
        keyframe_fill: Some(KeyframeFill::Algorithm1),
        apex_flow: None,
        tim10: None,
    }
}

/// The project's Python (the `.venv` that `scripts/bootstrap.sh` creates), for the tests that check the
/// Rust code against independent Python code (OpenCV, scikit-image, openpyxl, scikit-learn). Panics, with
/// what to run, when it is missing: those tests must not pass by skipping.
pub fn project_python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "the project's Python ({}) is missing: run scripts/bootstrap.sh",
        p.display()
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_sample_is_a_valid_member_of_its_fold() {
        let s = sample(Dataset::Samm, "006", "006_1_2", &[("megc3", 2)]);
        assert_eq!(s.id, "samm/006/006_1_2");
        assert_eq!(s.fold_key(), "samm/006");
        assert_eq!(s.labels["megc3"], 2);
        assert!(s.onset <= s.apex && s.apex <= s.offset);
        assert_eq!(s.keyframe_times.len(), 11);
        let i = prep_info("sim", 2, 10);
        assert_eq!(i.keyframe_fill_rule(), Some(KeyframeFill::Algorithm1));
        assert_eq!((i.size, i.frames, i.channels.len()), (2, 10, 2));
    }
}
