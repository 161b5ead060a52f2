//! Fixtures the coordinator's unit tests share (`cfg(test)` only): prepared-file summaries of the
//! composite dataset without any tensor, a PNG decoder for the plots, and (in [`loopback_get`], also
//! compiled into the integration tests' support module through `#[path]`) a raw HTTP GET on loopback.

pub mod loopback_get;

use crate::plan::DatasetSummary;
use mer_shared::composite::composite_list;
use mer_shared::digest::sha256_hex;
use mer_shared::prepared::{PrepInfo, SampleMeta};
use mer_shared::Dataset;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A prepared-file summary with the composite's 442 samples and labels under megc3 (and, for CASME II
/// and SAMM, a synthetic objective5 label), without any tensor.
pub(crate) fn composite_summary(keyframes: &str) -> DatasetSummary {
    let samples = composite_list()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut labels = BTreeMap::from([("megc3".to_string(), e.label)]);
            if e.dataset != Dataset::Smic {
                labels.insert("objective5".to_string(), i % 5);
            }
            SampleMeta {
                labels,
                ..mer_shared::fixtures::sample(e.dataset, &e.subject, &e.filename, &[])
            }
        })
        .collect();
    DatasetSummary {
        hash: sha256_hex(keyframes.as_bytes()),
        path: PathBuf::from(format!("{keyframes}.safetensors")),
        info: PrepInfo {
            keyframes: keyframes.into(),
            interpolator: "farneback-warp-blend".into(),
            crop: "haar".into(),
            ..mer_shared::fixtures::prep_info("test", 112, 10)
        },
        samples,
    }
}

/// `composite_summary` with both optional baseline groups recorded.
pub(crate) fn composite_with_groups(keyframes: &str) -> DatasetSummary {
    let mut s = composite_summary(keyframes);
    s.info.apex_flow = Some(mer_shared::prepared::ApexFlowInfo {
        size: 28,
        channels: vec!["u".into(), "v".into(), "strain".into()],
    });
    s.info.tim10 = Some(mer_shared::prepared::Tim10Info {
        size: 112,
        frames: 10,
    });
    s
}

/// `s` plus 3 subjects of each newer labelled part (CAS(ME)^3 A, 4DME, MMEW), one megc3 clip per class each.
pub(crate) fn with_newer_parts(mut s: DatasetSummary) -> DatasetSummary {
    for d in [Dataset::Casme3a, Dataset::Fourdme, Dataset::Mmew] {
        for subject in ["S1", "S2", "S3"] {
            for l in 0..3 {
                s.samples.push(mer_shared::fixtures::sample(
                    d,
                    subject,
                    &format!("c{l}"),
                    &[("megc3", l)],
                ));
            }
        }
    }
    s
}

/// Decodes PNG bytes; returns (width, height).
pub(crate) fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().expect("PNG header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("PNG data");
    (info.width, info.height)
}
