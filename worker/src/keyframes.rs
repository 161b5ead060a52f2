//! Key-frame construction: the 11 frames whose 10 adjacent optical flows are the model input (paper Fig. 7).
//!
//! - **Adaptive** (Algorithm 1 with eq. 1, as settled in design.md): `N = te - ts + 1`,
//!   `N_sp = floor((tp - ts + 1) * 8 / N)`, `N_pe = 8 - N_sp`. Onset side: `t1 = ts, t2 = tp`; repeatedly
//!   `m = floor((t1 + t2) / 2)`, synthesize the frame at `m` from (frame at `t1`, current frame at `t2`),
//!   then `t2 = m`, `N_sp` times or until bisection runs out (`m - t1 <= 1`). The offset side mirrors it
//!   (`t1 = tp, t2 = te`, frame at `m` from (current frame at `t1`, frame at `te`), `t1 = m`, stop when
//!   `te - m <= 1`). Frames still missing are then filled between frames already made: the widest gap
//!   between consecutive key-frame times (the earliest on ties) that still has an integer frame inside
//!   gets its floor midpoint, synthesized from its two neighbours. When no such gap is left (clips with
//!   `offset - onset < 10`), the list is padded with copies of the offset frame up to 11 (zero flow at the
//!   end). Apex = onset or apex = offset simply removes one anchor. Only the onset, apex and offset frames
//!   are read from disk; everything else is synthesized by the [`FrameInterpolator`].
//!   Worked example (onset 25, apex 91, offset 121): 25, 27, 29, 33, 41, 58, 91, 106, 113, 117, 121.
//! - **TAS**: the original frames at the same times as the adaptive plan.
//! - **TIM** (temporal interpolation model, Zhou et al. 2011): the clip onset..offset is embedded on the
//!   path graph and resampled at 11 equally spaced times. With all `n - 1` embedding dimensions the
//!   graph-embedding curve is exactly the cosine (DCT-II) expansion of the frame sequence, since the path
//!   graph Laplacian's eigenvectors are the DCT-II basis; we evaluate that expansion per pixel at the
//!   fractional positions (it reproduces the original frames at integer positions).

use crate::datasets::frames::GrayFrame;
use crate::error::{Result, WorkerError};
use crate::interp::FrameInterpolator;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Number of key-frames (10 flows between them).
pub const KEYFRAMES: usize = 11;

/// Key-frame construction method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyframeMethod {
    /// Algorithm 1: bisection towards onset and offset with synthesized frames (the paper's method).
    #[default]
    Adaptive,
    /// Temporal adaptive sampling: original frames at the adaptive times.
    Tas,
    /// Temporal interpolation model: 11 equally spaced, interpolated frames over onset..offset.
    Tim,
}

impl KeyframeMethod {
    /// The name stored in `PrepInfo::keyframes`.
    pub fn key(self) -> &'static str {
        match self {
            KeyframeMethod::Adaptive => "adaptive",
            KeyframeMethod::Tas => "tas",
            KeyframeMethod::Tim => "tim",
        }
    }
}

impl fmt::Display for KeyframeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for KeyframeMethod {
    type Err = WorkerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "adaptive" => Ok(KeyframeMethod::Adaptive),
            "tas" => Ok(KeyframeMethod::Tas),
            "tim" => Ok(KeyframeMethod::Tim),
            _ => Err(WorkerError::InvalidOption {
                option: "--keyframes".into(),
                message: format!("'{s}' is not adaptive, tas or tim"),
            }),
        }
    }
}

/// How one key-frame of the plan is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The original frame with this number.
    Original,
    /// Synthesized half-way between two earlier nodes of the plan (indices into `Plan::nodes`).
    Mid(usize, usize),
    /// A copy of the offset frame (padding of short clips).
    PadOffset,
}

/// One node of the plan, in construction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Frame time (number).
    pub time: u32,
    /// How the frame is made.
    pub source: Source,
}

/// The adaptive key-frame plan of one clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Nodes in construction order (every `Mid` refers to earlier nodes).
    pub nodes: Vec<Node>,
    /// The 11 key-frames in temporal order (indices into `nodes`); padding copies come last.
    pub order: Vec<usize>,
}

impl Plan {
    /// The 11 key-frame times in temporal order.
    pub fn times(&self) -> Vec<u32> {
        self.order.iter().map(|&i| self.nodes[i].time).collect()
    }
}

/// Checks onset <= apex <= offset.
pub fn check_times(onset: u32, apex: u32, offset: u32) -> std::result::Result<(), String> {
    if offset < onset {
        return Err(format!("offset {offset} is before onset {onset}"));
    }
    if apex < onset || apex > offset {
        return Err(format!(
            "apex {apex} is outside onset..offset ({onset}..{offset})"
        ));
    }
    Ok(())
}

/// Builds the adaptive plan (Algorithm 1, see the module docs).
pub fn adaptive_plan(ts: u32, tp: u32, te: u32) -> std::result::Result<Plan, String> {
    check_times(ts, tp, te)?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut at = std::collections::BTreeMap::<u32, usize>::new();
    for t in [ts, tp, te] {
        if let std::collections::btree_map::Entry::Vacant(e) = at.entry(t) {
            e.insert(nodes.len());
            nodes.push(Node {
                time: t,
                source: Source::Original,
            });
        }
    }
    let n = (te - ts + 1) as u64;
    let n_sp = (((tp - ts + 1) as u64 * 8) / n) as usize;
    let n_pe = 8 - n_sp;
    // Onset side: bisect towards the onset.
    let (t1, mut t2, mut cur) = (ts, tp, at[&tp]);
    for _ in 0..n_sp {
        let m = (t1 + t2) / 2;
        if m - t1 <= 1 || at.contains_key(&m) {
            break;
        }
        let idx = nodes.len();
        nodes.push(Node {
            time: m,
            source: Source::Mid(at[&t1], cur),
        });
        at.insert(m, idx);
        t2 = m;
        cur = idx;
    }
    // Offset side: bisect towards the offset.
    let (mut t1, t2, mut cur) = (tp, te, at[&tp]);
    for _ in 0..n_pe {
        let m = (t1 + t2) / 2;
        if t2 - m <= 1 || at.contains_key(&m) {
            break;
        }
        let idx = nodes.len();
        nodes.push(Node {
            time: m,
            source: Source::Mid(cur, at[&t2]),
        });
        at.insert(m, idx);
        t1 = m;
        cur = idx;
    }
    // Fill the widest gaps that still hold an integer frame.
    while nodes.len() < KEYFRAMES {
        let times: Vec<u32> = at.keys().copied().collect();
        let best = times
            .windows(2)
            .filter(|w| w[1] - w[0] >= 2)
            .max_by(|a, b| {
                (a[1] - a[0])
                    .cmp(&(b[1] - b[0]))
                    .then_with(|| b[0].cmp(&a[0]))
            });
        let Some(w) = best else { break };
        let m = (w[0] + w[1]) / 2;
        let idx = nodes.len();
        nodes.push(Node {
            time: m,
            source: Source::Mid(at[&w[0]], at[&w[1]]),
        });
        at.insert(m, idx);
    }
    let mut order: Vec<usize> = at.values().copied().collect();
    while order.len() < KEYFRAMES {
        order.push(nodes.len());
        nodes.push(Node {
            time: te,
            source: Source::PadOffset,
        });
    }
    Ok(Plan { nodes, order })
}

/// Executes an adaptive plan: reads the original frames with `load` (onset, apex, offset only) and
/// synthesizes the rest with `interp`. Returns the 11 frames in temporal order.
pub fn build_adaptive(
    plan: &Plan,
    mut load: impl FnMut(u32) -> Result<GrayFrame>,
    interp: &dyn FrameInterpolator,
) -> Result<Vec<GrayFrame>> {
    let mut made: Vec<Option<GrayFrame>> = vec![None; plan.nodes.len()];
    let te = plan.nodes.iter().map(|n| n.time).max().unwrap_or(0);
    let offset_idx = plan
        .nodes
        .iter()
        .position(|n| n.source == Source::Original && n.time == te);
    for (i, node) in plan.nodes.iter().enumerate() {
        let f = match node.source {
            Source::Original => load(node.time)?,
            Source::Mid(a, b) => {
                let (fa, fb) = (made[a].as_ref(), made[b].as_ref());
                match (fa, fb) {
                    (Some(fa), Some(fb)) => interp.midpoint(fa, fb)?,
                    _ => {
                        return Err(WorkerError::sample(
                            "plan",
                            "key-frame plan refers to a frame not yet made",
                        ))
                    }
                }
            }
            Source::PadOffset => {
                let src = offset_idx.and_then(|o| made[o].clone());
                match src {
                    Some(f) => f,
                    None => load(node.time)?,
                }
            }
        };
        made[i] = Some(f);
    }
    plan.order
        .iter()
        .map(|&i| {
            made[i]
                .clone()
                .ok_or_else(|| WorkerError::sample("plan", "key-frame missing"))
        })
        .collect()
}

/// The 11 equally spaced TIM times over onset..offset (fractional frame numbers).
pub fn tim_times(ts: u32, te: u32) -> Vec<f64> {
    (0..KEYFRAMES)
        .map(|j| ts as f64 + j as f64 * (te - ts) as f64 / (KEYFRAMES - 1) as f64)
        .collect()
}

/// TIM resampling: evaluates the cosine (DCT-II) expansion of the sequence `frames` (positions 0..n-1)
/// at the fractional `positions`. Exact at integer positions.
pub fn tim_resample(frames: &[GrayFrame], positions: &[f64]) -> Result<Vec<GrayFrame>> {
    let n = frames.len();
    let Some(first) = frames.first() else {
        return Err(WorkerError::sample("tim", "no frames to interpolate"));
    };
    if frames
        .iter()
        .any(|f| f.width != first.width || f.height != first.height)
    {
        return Err(WorkerError::sample("tim", "frames differ in size"));
    }
    let npx = first.data.len();
    // DCT-II coefficients c_k = (2 - [k == 0]) / n * sum_i x_i cos(pi k (i + 0.5) / n).
    let mut coef = vec![vec![0f64; npx]; n];
    for (k, ck) in coef.iter_mut().enumerate() {
        let scale = if k == 0 {
            1.0 / n as f64
        } else {
            2.0 / n as f64
        };
        for (i, f) in frames.iter().enumerate() {
            let w = scale * (std::f64::consts::PI * k as f64 * (i as f64 + 0.5) / n as f64).cos();
            for (c, &x) in ck.iter_mut().zip(&f.data) {
                *c += w * x as f64;
            }
        }
    }
    Ok(positions
        .iter()
        .map(|&t| {
            let mut out = vec![0f64; npx];
            for (k, ck) in coef.iter().enumerate() {
                let w = (std::f64::consts::PI * k as f64 * (t + 0.5) / n as f64).cos();
                for (o, &c) in out.iter_mut().zip(ck) {
                    *o += w * c;
                }
            }
            GrayFrame {
                width: first.width,
                height: first.height,
                data: out
                    .into_iter()
                    .map(|v| v.clamp(0.0, 255.0) as f32)
                    .collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_of_the_paper() {
        let p = adaptive_plan(25, 91, 121).unwrap();
        assert_eq!(
            p.times(),
            vec![25, 27, 29, 33, 41, 58, 91, 106, 113, 117, 121]
        );
        // 58 is made from onset 25 and apex 91; 41 from 25 and the synthesized 58.
        let node = |t: u32| p.nodes.iter().find(|n| n.time == t).unwrap();
        let idx = |t: u32| p.nodes.iter().position(|n| n.time == t).unwrap();
        assert_eq!(node(58).source, Source::Mid(idx(25), idx(91)));
        assert_eq!(node(41).source, Source::Mid(idx(25), idx(58)));
        assert_eq!(node(106).source, Source::Mid(idx(91), idx(121)));
        assert_eq!(node(113).source, Source::Mid(idx(106), idx(121)));
        assert_eq!(node(91).source, Source::Original);
    }

    #[test]
    fn short_clips_fill_then_pad_with_the_offset() {
        let p = adaptive_plan(0, 3, 6).unwrap();
        assert_eq!(p.times(), vec![0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6]);
        assert_eq!(p.nodes[*p.order.last().unwrap()].source, Source::PadOffset);
        let p = adaptive_plan(100, 105, 110).unwrap(); // offset - onset = 10: exactly 11 frames
        assert_eq!(p.times(), (100..=110).collect::<Vec<_>>());
        let p = adaptive_plan(7, 7, 7).unwrap();
        assert_eq!(p.times(), vec![7; 11]);
        for (ts, tp, te) in [(0, 0, 5), (0, 5, 5), (3, 4, 12), (10, 11, 20), (0, 1, 2)] {
            let t = adaptive_plan(ts, tp, te).unwrap().times();
            assert_eq!(t.len(), 11);
            assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
            assert_eq!(t[0], ts);
            assert!(t.contains(&tp));
            assert_eq!(*t.last().unwrap(), te);
            let distinct: std::collections::BTreeSet<_> = t.iter().collect();
            assert_eq!(distinct.len(), (te - ts + 1).min(11) as usize, "{t:?}");
        }
    }

    #[test]
    fn apex_at_onset_or_offset() {
        let p = adaptive_plan(10, 10, 30).unwrap().times();
        assert_eq!(p.len(), 11);
        assert_eq!(p[0], 10);
        assert_eq!(p[10], 30);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
        // N_sp = floor(8/21) = 0: the offset side gets all 8 bisections it can make (20, 25, 27, 28).
        for t in [20, 25, 27, 28] {
            assert!(p.contains(&t), "{p:?}");
        }
        let q = adaptive_plan(10, 30, 30).unwrap().times();
        assert_eq!(q.len(), 11);
        assert!(q.windows(2).all(|w| w[0] < w[1]), "{q:?}");
        for t in [20, 15, 12] {
            assert!(q.contains(&t), "{q:?}");
        }
        assert!(adaptive_plan(10, 31, 30).unwrap_err().contains("apex 31"));
        assert!(adaptive_plan(10, 9, 30).is_err());
        assert!(adaptive_plan(10, 10, 9)
            .unwrap_err()
            .contains("before onset"));
    }

    struct Avg;
    impl FrameInterpolator for Avg {
        fn name(&self) -> String {
            "avg".into()
        }
        fn midpoint(&self, a: &GrayFrame, b: &GrayFrame) -> Result<GrayFrame> {
            Ok(GrayFrame {
                width: a.width,
                height: a.height,
                data: a
                    .data
                    .iter()
                    .zip(&b.data)
                    .map(|(x, y)| (x + y) / 2.0)
                    .collect(),
            })
        }
    }

    #[test]
    fn build_reads_only_anchors_and_synthesizes_the_rest() {
        let p = adaptive_plan(25, 91, 121).unwrap();
        let mut loaded = Vec::new();
        let frames = build_adaptive(
            &p,
            |t| {
                loaded.push(t);
                Ok(GrayFrame::filled(2, 2, t as f32))
            },
            &Avg,
        )
        .unwrap();
        assert_eq!(loaded, vec![25, 91, 121]);
        // With a linear ramp and an averaging interpolator the synthesized frame at 58 = (25 + 91) / 2.
        assert_eq!(frames[5].data[0], 58.0);
        assert_eq!(frames[1].data[0], 27.0625);
        let short = adaptive_plan(0, 3, 6).unwrap();
        let f = build_adaptive(&short, |t| Ok(GrayFrame::filled(1, 1, t as f32)), &Avg).unwrap();
        assert_eq!(
            f.iter().map(|f| f.data[0]).collect::<Vec<_>>(),
            vec![0.0, 1.5, 2.25, 3.0, 4.5, 5.25, 6.0, 6.0, 6.0, 6.0, 6.0]
        );
    }

    #[test]
    fn tim_is_exact_at_integer_positions_and_smooth_between() {
        let frames: Vec<GrayFrame> = (0..7)
            .map(|i| GrayFrame::filled(3, 2, (i * 10) as f32))
            .collect();
        let out = tim_resample(&frames, &[0.0, 3.0, 6.0, 2.5]).unwrap();
        assert!((out[0].data[0] - 0.0).abs() < 1e-3);
        assert!((out[1].data[4] - 30.0).abs() < 1e-3);
        assert!((out[2].data[5] - 60.0).abs() < 1e-3);
        assert!(
            out[3].data[0] > 20.0 && out[3].data[0] < 30.0,
            "{}",
            out[3].data[0]
        );
        let t = tim_times(25, 121);
        assert_eq!(t.len(), 11);
        assert_eq!(t[0], 25.0);
        assert_eq!(t[10], 121.0);
        assert!((t[1] - 34.6).abs() < 1e-9);
    }
}
