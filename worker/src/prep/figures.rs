//! Figures of one clip, as in the paper's Fig. 5 and Fig. 6: the original sequence next to its
//! key-frame sequence (two PNG picture strips), and the motion curve of both (mean Farneback flow
//! magnitude between consecutive frames, written as CSV and returned for plotting).
//!
//! The clip is taken as `mer prep` prepared it: its onset/apex/offset (after corrections) and the
//! key-frame method and flow parameters come from the prepared file; the pixels are read again from the
//! dataset root, cropped the same way (Haar face box on the onset frame, else the stored crop box) and
//! resized to the prepared size. Key-frames are rebuilt with the Farneback warp-and-blend interpolator.
//! Labels are drawn with OpenCV's built-in Hershey font (no system font needed).

use crate::error::{Result, WorkerError};
use crate::prep::datasets::frames::{find_frame, GrayFrame};
use crate::prep::datasets::{read_dataset, ClipRecord, DatasetKind};
use crate::prep::face::{read_gray, FaceCrop, FaceDetector};
use crate::prep::flow::{farneback, to_mat_u8, FlowParams};
use crate::prep::interp::FarnebackInterpolator;
use crate::prep::keyframes::{
    adaptive_plan, build_adaptive, tim_resample, tim_times, KeyframeMethod, Source,
};
use mer_shared::fs::write_atomic;
use mer_shared::prepared::{Prepared, SampleMeta};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureOptions {
    /// The prepared file (`mer prep` output) that holds the clip.
    pub prepared: PathBuf,
    /// The root of the clip's dataset (CASME II, SAMM, SMIC-HS or SMIC-E layout).
    pub dataset_root: PathBuf,
    /// The clip's sample id, `dataset/subject/filename` (e.g. `casme2/sub01/EP02_01f`).
    pub clip: String,
    /// Where the PNG and CSV files go.
    pub out_dir: PathBuf,
    /// Frames shown in the original-sequence strip (evenly spaced over onset..offset, apex included).
    pub strip_frames: usize,
}

/// The figures written for one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFigures {
    /// Sample id.
    pub clip: String,
    /// Onset, apex, offset frame numbers (as prepared).
    pub onset: u32,
    /// Apex frame number.
    pub apex: u32,
    /// Offset frame number.
    pub offset: u32,
    /// Key-frame method of the prepared file.
    pub method: String,
    /// The 11 key-frame times.
    pub keyframe_times: Vec<f64>,
    /// Key-frame times that were synthesized (adaptive), not read.
    pub synthesized: Vec<f64>,
    /// Frame numbers shown in the original strip.
    pub strip_times: Vec<u32>,
    /// `<stem>_original.png`: the original sequence strip.
    pub original_png: PathBuf,
    /// `<stem>_keyframes.png`: the key-frame sequence strip.
    pub keyframes_png: PathBuf,
    /// `<stem>_motion.csv`: both motion curves.
    pub motion_csv: PathBuf,
    /// Motion of the original sequence: (time between frames t and t+1, mean flow magnitude in px).
    pub motion_original: Vec<(f64, f64)>,
    /// Motion of the key-frame sequence: (mid time of consecutive key-frames, mean flow magnitude in px).
    pub motion_keyframes: Vec<(f64, f64)>,
    /// Remarks (e.g. the prepared file used another interpolator).
    pub notes: Vec<String>,
}

fn flow_params(map: &BTreeMap<String, f64>) -> FlowParams {
    let d = FlowParams::default();
    let g = |k: &str, v: f64| map.get(k).copied().unwrap_or(v);
    FlowParams {
        pyr_scale: g("pyr_scale", d.pyr_scale),
        levels: g("levels", d.levels as f64) as i32,
        winsize: g("winsize", d.winsize as f64) as i32,
        iterations: g("iterations", d.iterations as f64) as i32,
        poly_n: g("poly_n", d.poly_n as f64) as i32,
        poly_sigma: g("poly_sigma", d.poly_sigma),
        flags: g("flags", d.flags as f64) as i32,
    }
}

/// Finds the clip's record under `root` (the reader chosen by the sample's dataset part).
fn find_record(meta: &SampleMeta, root: &Path) -> Result<ClipRecord> {
    let kinds = DatasetKind::of(meta.dataset);
    let mut errors = Vec::new();
    for &k in kinds {
        match read_dataset(k, root) {
            Ok(recs) => {
                if let Some(r) = recs.into_iter().find(|r| r.id() == meta.id) {
                    return Ok(r);
                }
                errors.push(format!("{k:?} layout: no clip {}", meta.id));
            }
            Err(e) => errors.push(format!("{k:?} layout: {e}")),
        }
    }
    Err(WorkerError::layout(
        root,
        format!("cannot find clip {} ({})", meta.id, errors.join("; ")),
    ))
}

/// Mean flow magnitude between two frames.
fn motion(a: &GrayFrame, b: &GrayFrame, p: &FlowParams) -> Result<f64> {
    let f = farneback(a, b, p)?;
    let n = f.u.len().max(1) as f64;
    Ok(f.u
        .iter()
        .zip(&f.v)
        .map(|(u, v)| ((u * u + v * v) as f64).sqrt())
        .sum::<f64>()
        / n)
}

/// Evenly spaced frame numbers over onset..offset (at most `n`), apex included.
pub fn strip_times(onset: u32, apex: u32, offset: u32, n: usize) -> Vec<u32> {
    let len = (offset - onset + 1) as usize;
    let n = n.clamp(2, len.max(2));
    let mut set: BTreeSet<u32> = (0..n)
        .map(|i| onset + ((i * (len - 1)) as f64 / (n - 1) as f64).round() as u32)
        .collect();
    if !set.contains(&apex) {
        // Replace the nearest pick with the apex.
        if let Some(&near) = set
            .iter()
            .filter(|&&t| t != onset && t != offset)
            .min_by_key(|&&t| t.abs_diff(apex))
        {
            set.remove(&near);
        }
        set.insert(apex);
    }
    set.into_iter().collect()
}

/// Draws frames side by side with a label under each and a title; returns PNG bytes.
fn strip_png(title: &str, frames: &[GrayFrame], labels: &[String]) -> Result<Vec<u8>> {
    use opencv::core::{Point, Scalar, Vector, VectorToVec};
    let (Some(first), true) = (frames.first(), frames.len() == labels.len()) else {
        return Err(WorkerError::sample("figure", "no frames to draw"));
    };
    let (w, h, gap, top, bottom) = (first.width, first.height, 4usize, 26usize, 22usize);
    let width = frames.len() * (w + gap) + gap;
    let height = top + h + bottom;
    let mut canvas = GrayFrame::filled(width, height, 255.0);
    for (i, f) in frames.iter().enumerate() {
        if f.width != w || f.height != h {
            return Err(WorkerError::sample("figure", "frames differ in size"));
        }
        let x0 = gap + i * (w + gap);
        for y in 0..h {
            let dst = (top + y) * width + x0;
            canvas.data[dst..dst + w].copy_from_slice(&f.data[y * w..(y + 1) * w]);
        }
    }
    let mut mat = to_mat_u8(&canvas)?;
    let black = Scalar::all(0.0);
    let font = opencv::imgproc::FONT_HERSHEY_SIMPLEX;
    let cv = |e| WorkerError::cv("drawing a figure", e);
    opencv::imgproc::put_text(
        &mut mat,
        title,
        Point::new(gap as i32, 18),
        font,
        0.5,
        black,
        1,
        opencv::imgproc::LINE_AA,
        false,
    )
    .map_err(cv)?;
    for (i, l) in labels.iter().enumerate() {
        let x = (gap + i * (w + gap)) as i32;
        opencv::imgproc::put_text(
            &mut mat,
            l,
            Point::new(x + 2, (top + h + 16) as i32),
            font,
            0.4,
            black,
            1,
            opencv::imgproc::LINE_AA,
            false,
        )
        .map_err(cv)?;
    }
    let mut buf = Vector::<u8>::new();
    opencv::imgcodecs::imencode(".png", &mat, &mut buf, &Vector::new())
        .map_err(|e| WorkerError::cv("encoding PNG", e))?;
    Ok(buf.to_vec())
}

/// Draws the clip's figures (see the module docs) into `out_dir`; returns what was written.
pub fn clip_figures(o: &FigureOptions) -> Result<ClipFigures> {
    let meta = Prepared::read_meta(&o.prepared)?;
    let info = meta.info;
    let sample = find_sample(o, &meta.samples)?;
    let rec = find_record(sample, &o.dataset_root)?;
    let (ts, tp, te) = (sample.onset, sample.apex, sample.offset);
    crate::prep::keyframes::check_times(ts, tp, te)
        .map_err(|m| WorkerError::sample(&o.clip, format!("{m} (in {})", o.prepared.display())))?;
    let size = info.size;
    let path_of = |t: u32| {
        find_frame(&rec.frames, t)
            .map(|f| f.path.clone())
            .ok_or_else(|| {
                WorkerError::sample(
                    &o.clip,
                    format!("frame {t} missing in {}", rec.dir.display()),
                )
            })
    };
    let onset_mat = read_gray(&path_of(ts)?)?;
    let crop = match FaceDetector::new()?.detect(&onset_mat)? {
        Some(c) => c,
        None => FaceCrop {
            rect: sample.crop_box,
            angle: 0.0,
            eyes: false,
            fallback: true,
        },
    };
    let mut notes = Vec::new();
    if crop.rect != sample.crop_box {
        notes.push(format!(
            "face box {:?} differs from the prepared {:?}",
            crop.rect, sample.crop_box
        ));
    }
    let load = |t: u32| -> Result<GrayFrame> { crop.apply(&read_gray(&path_of(t)?)?, size) };
    let original: Vec<GrayFrame> = (ts..=te).map(load).collect::<Result<_>>()?;
    let params = flow_params(&info.flow_params);
    let method: KeyframeMethod = info
        .keyframes
        .split('-')
        .next()
        .unwrap_or("adaptive")
        .parse()?;
    if method == KeyframeMethod::Adaptive && info.interpolator != "farneback-warp-blend" {
        notes.push(format!("the prepared file synthesized key-frames with '{}'; these figures use farneback-warp-blend", info.interpolator));
    }
    let (keyframes, times, synthesized) =
        figure_keyframes(o, sample, &info, method, &original, params)?;
    let mut motion_original = Vec::new();
    for (i, w) in original.windows(2).enumerate() {
        motion_original.push((ts as f64 + i as f64 + 0.5, motion(&w[0], &w[1], &params)?));
    }
    let mut motion_keyframes = Vec::new();
    for (i, w) in keyframes.windows(2).enumerate() {
        motion_keyframes.push((
            (times[i] + times[i + 1]) / 2.0,
            motion(&w[0], &w[1], &params)?,
        ));
    }
    let (st, original_png) = write_original_strip(o, sample, &original)?;
    let keyframes_png = write_keyframe_strip(o, &info.keyframes, &keyframes, &times, &synthesized)?;
    let motion_csv = write_motion_csv(o, &motion_original, &motion_keyframes)?;
    Ok(ClipFigures {
        clip: o.clip.clone(),
        onset: ts,
        apex: tp,
        offset: te,
        method: info.keyframes.clone(),
        keyframe_times: times,
        synthesized,
        strip_times: st,
        original_png,
        keyframes_png,
        motion_csv,
        motion_original,
        motion_keyframes,
        notes,
    })
}

/// The sample `o.clip` of a prepared file's `samples`; the error lists a few ids like it.
fn find_sample<'a>(o: &FigureOptions, samples: &'a [SampleMeta]) -> Result<&'a SampleMeta> {
    let Some(sample) = samples.iter().find(|s| s.id == o.clip) else {
        let near: Vec<&str> = samples
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| id.contains(o.clip.rsplit('/').next().unwrap_or("")))
            .take(5)
            .collect();
        return Err(WorkerError::sample(
            &o.clip,
            format!(
                "not in {} ({} samples; ids are dataset/subject/filename{})",
                o.prepared.display(),
                samples.len(),
                if near.is_empty() {
                    String::new()
                } else {
                    format!(", e.g. {}", near.join(", "))
                }
            ),
        ));
    };
    Ok(sample)
}

/// Key-frames, their times and the synthesized ones among them.
type FigureKeyframes = (Vec<GrayFrame>, Vec<f64>, Vec<f64>);

/// Rebuilds the sample's key-frames by `method` from its `original` frames (onset..=offset), with the
/// Farneback interpolator of `params`.
fn figure_keyframes(
    o: &FigureOptions,
    sample: &SampleMeta,
    info: &mer_shared::prepared::PrepInfo,
    method: KeyframeMethod,
    original: &[GrayFrame],
    params: FlowParams,
) -> Result<FigureKeyframes> {
    let (ts, tp, te) = (sample.onset, sample.apex, sample.offset);
    let at = |t: u32| original[(t - ts) as usize].clone();
    let interp = FarnebackInterpolator { params };
    Ok(match method {
        KeyframeMethod::Adaptive | KeyframeMethod::Tas => {
            let fill = info.keyframe_fill_rule().unwrap_or_default();
            let plan =
                adaptive_plan(ts, tp, te, fill).map_err(|m| WorkerError::sample(&o.clip, m))?;
            let times: Vec<f64> = plan.times().iter().map(|&t| t as f64).collect();
            if method == KeyframeMethod::Adaptive {
                let synth: Vec<f64> = plan
                    .order
                    .iter()
                    .map(|&i| plan.nodes[i])
                    .filter(|n| matches!(n.source, Source::Mid(..)))
                    .map(|n| n.time as f64)
                    .collect();
                (build_adaptive(&plan, |t| Ok(at(t)), &interp)?, times, synth)
            } else {
                (
                    plan.times().into_iter().map(at).collect(),
                    times,
                    Vec::new(),
                )
            }
        }
        KeyframeMethod::Tim => {
            let times = tim_times(ts, te);
            let pos: Vec<f64> = times.iter().map(|t| t - ts as f64).collect();
            (tim_resample(original, &pos)?, times.clone(), times)
        }
    })
}

/// Writes `<stem>_original.png`, the strip of the sample's original frames (`original`: onset..=offset)
/// at [`strip_times`]; returns those times and the file.
fn write_original_strip(
    o: &FigureOptions,
    sample: &SampleMeta,
    original: &[GrayFrame],
) -> Result<(Vec<u32>, PathBuf)> {
    let (ts, tp, te) = (sample.onset, sample.apex, sample.offset);
    let at = |t: u32| original[(t - ts) as usize].clone();
    let stem = o.clip.replace('/', "_");
    let st = strip_times(ts, tp, te, o.strip_frames);
    let labels: Vec<String> = st
        .iter()
        .map(|&t| {
            if t == tp {
                format!("{t} apex")
            } else {
                t.to_string()
            }
        })
        .collect();
    let frames: Vec<GrayFrame> = st.iter().map(|&t| at(t)).collect();
    let original_png = o.out_dir.join(format!("{stem}_original.png"));
    let title = format!(
        "{}: original frames {ts}..{te} (apex {tp}), {} of {}",
        o.clip,
        st.len(),
        te - ts + 1
    );
    write_atomic(&original_png, &strip_png(&title, &frames, &labels)?)?;
    Ok((st, original_png))
}

/// Writes `<stem>_keyframes.png`, the strip of the key-frames (`method`: the prepared file's key-frame
/// method), synthesized ones marked `*`; returns the file.
fn write_keyframe_strip(
    o: &FigureOptions,
    method: &str,
    keyframes: &[GrayFrame],
    times: &[f64],
    synthesized: &[f64],
) -> Result<PathBuf> {
    let stem = o.clip.replace('/', "_");
    let klabels: Vec<String> = times
        .iter()
        .map(|t| {
            let s = if t.fract() == 0.0 {
                format!("{t:.0}")
            } else {
                format!("{t:.1}")
            };
            if synthesized.contains(t) {
                format!("{s}*")
            } else {
                s
            }
        })
        .collect();
    let keyframes_png = o.out_dir.join(format!("{stem}_keyframes.png"));
    let title = format!(
        "{}: {} key-frames ({}; * = synthesized)",
        o.clip,
        times.len(),
        method
    );
    write_atomic(&keyframes_png, &strip_png(&title, keyframes, &klabels)?)?;
    Ok(keyframes_png)
}

/// Writes `<stem>_motion.csv`, both motion curves; returns the file.
fn write_motion_csv(
    o: &FigureOptions,
    motion_original: &[(f64, f64)],
    motion_keyframes: &[(f64, f64)],
) -> Result<PathBuf> {
    let stem = o.clip.replace('/', "_");
    let mut csv = String::from("sequence,t_mid,mean_flow_magnitude_px\n");
    for (t, m) in motion_original {
        csv += &format!("original,{t},{m:.6}\n");
    }
    for (t, m) in motion_keyframes {
        csv += &format!("keyframes,{t},{m:.6}\n");
    }
    let motion_csv = o.out_dir.join(format!("{stem}_motion.csv"));
    write_atomic(&motion_csv, csv.as_bytes())?;
    Ok(motion_csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_times_are_spread_and_hold_the_apex() {
        assert_eq!(strip_times(25, 91, 121, 11).len(), 11);
        let s = strip_times(25, 91, 121, 11);
        assert!(
            s.contains(&25) && s.contains(&91) && s.contains(&121),
            "{s:?}"
        );
        assert_eq!(strip_times(1, 2, 3, 11), vec![1, 2, 3]);
        assert!(strip_times(10, 13, 40, 5).contains(&13));
    }
}
