//! The baselines' input planes: the `apex_flow` group's form of an onset->apex flow (u, v, optical strain at
//! the baselines' size), and the `keyframe_sum` input built from a prepared file's key-frame flows.
//! [`flow_to_apex`] is also SinC3D's `input_flow = "apex-sum"`.

use crate::error::WorkerError;
use mer_shared::prepared::Prepared;

/// Sample `i`'s prepared flows summed over the key-frames from the first to the one nearest the apex
/// ([`mer_shared::prepared::SampleMeta::apex_keyframe`]): `[C, H, W]` at the prepared size, the key-frame
/// form of the onset->apex motion. The one rule for SinC3D's `input_flow = "apex-sum"` and the baselines'
/// `input = "keyframe_sum"`; the error names a sample without key-frame times.
pub fn flow_to_apex(data: &Prepared, i: usize) -> Result<Vec<f32>, WorkerError> {
    let meta = &data.samples[i];
    let k = meta.apex_keyframe().ok_or_else(|| {
        WorkerError::sample(
            &meta.id,
            "the sum of the flows to the apex needs the key-frame times; the prepared file records none for it",
        )
    })?;
    let [_, c, t, h, w] = data.shape;
    let plane = h * w;
    let flow = data.sample_flow(i);
    let mut out = vec![0f32; c * plane];
    for (ch, acc) in out.chunks_exact_mut(plane).enumerate() {
        for f in 0..k.min(t) {
            let start = (ch * t + f) * plane;
            for (a, x) in acc.iter_mut().zip(&flow[start..start + plane]) {
                *a += x;
            }
        }
    }
    Ok(out)
}

/// The `apex_flow` group's form of one onset->apex flow `u`, `v` (`h` x `w` pixels): optical strain from
/// the flow's spatial derivatives at that resolution, then all three area-averaged down to `out` x `out`
/// (`[3, out, out]`); u and v are multiplied by the resize factor so that they stay displacements in
/// output pixels (strain is a ratio of displacements and needs no scaling). The one rule for both the
/// prepared group and the baselines' `keyframe_sum` input.
#[cfg(feature = "opencv")]
pub fn apex_group_planes(
    u: &[f32],
    v: &[f32],
    h: usize,
    w: usize,
    out: u32,
) -> Result<Vec<f32>, WorkerError> {
    let strain = crate::prep::strain::optical_strain(u, v, h, w);
    let scale = out as f32 / w as f32;
    let mut planes = Vec::with_capacity(3 * (out as usize).pow(2));
    for (plane, k) in [(u, scale), (v, scale), (&strain[..], 1.0)] {
        let r = crate::prep::flow::resize_area(plane, w, h, out as usize)?;
        planes.extend(r.into_iter().map(|x| x * k));
    }
    Ok(planes)
}

/// Sample `i`'s `keyframe_sum` input (`[3, out, out]`): its prepared u and v flows summed to the apex
/// key-frame ([`flow_to_apex`]), in the `apex_flow` group's form
/// ([`apex_group_planes`]). The error names the sample when its key-frame times are missing
/// or the file has no u, v flow.
#[cfg(feature = "opencv")]
pub fn keyframe_sum_input(data: &Prepared, i: usize, out: u32) -> Result<Vec<f32>, WorkerError> {
    let [_, c, _, h, w] = data.shape;
    if c < 2 {
        return Err(WorkerError::sample(
            &data.samples[i].id,
            format!("keyframe_sum needs u and v flow channels; the prepared file has {c}"),
        ));
    }
    let summed = flow_to_apex(data, i)?;
    let plane = h * w;
    apex_group_planes(&summed[..plane], &summed[plane..2 * plane], h, w, out)
}

/// Without the `opencv` feature there is no area resize: the `keyframe_sum` input is refused, naming the
/// sample.
#[cfg(not(feature = "opencv"))]
pub fn keyframe_sum_input(data: &Prepared, i: usize, _out: u32) -> Result<Vec<f32>, WorkerError> {
    Err(WorkerError::sample(
        &data.samples[i].id,
        "the keyframe_sum input needs the area resize of a build with the `opencv` feature",
    ))
}
