//! Key-frame construction: the 11 frames whose 10 adjacent optical flows are the model input (paper Fig. 7).
//!
//! - **Adaptive** (Algorithm 1 with eq. 1): `N = te - ts + 1`, `N_sp = floor((tp - ts + 1) * 8 / N)`,
//!   `N_pe = 8 - N_sp`.
//!   - *Bisection* (lines 1-12). Onset side: `t1 = ts, t2 = tp`; repeatedly `m = floor((t1 + t2) / 2)`,
//!     synthesize the frame at `m` from (frame at `t1`, current frame at `t2`), then `t2 = m`, `N_sp`
//!     times or until bisection runs out (`m - t1 <= 1`). The offset side mirrors it (`t1 = tp, t2 = te`,
//!     the frame at `m` from (current frame at `t1`, frame at `te`), `t1 = m`, stop when `te - m <= 1`).
//!     The apex's neighbours are thus the farthest from it, which keeps the flow into and out of the apex
//!     strong (the paper's third principle).
//!   - *Fill* when bisection ran out before a side had its count ([`KeyframeFill::Algorithm1`], the
//!     default, lines 13-21): ONE pass over that side's generated times `T'` in the order they were made
//!     (nearest the apex first); for each consecutive pair `(T'[t-1], T'[t])` the floor midpoint
//!     `m = floor((T'[t-1] + T'[t]) / 2)` is synthesized from the two when `|m - T'[t-1]| > 1`, until the
//!     side has its count. Midpoints made in the pass are not themselves paired again, and a side that
//!     still falls short does not hand its count to the other side. Nothing is ever put between the apex
//!     and its nearest generated frame, nor between a generated frame and the onset or the offset. Note
//!     the printed test is asymmetric: on the onset side (`T'` decreasing) a gap of 3 frames gets a
//!     midpoint, on the offset side (`T'` increasing) the floor lands next to `T'[t-1]` and a gap of 3 gets
//!     none; we follow the print.
//!   - *Merge* (line 22). The printed pseudo-code merges `T'` into the key-frame list `I_o` only in the
//!     branch where bisection ran out, which would drop every frame of a side whose bisection succeeded,
//!     although the paper's worked example (below) needs all of them. We merge every generated frame
//!     (bisection and fill, both sides) with the onset, apex and offset frames, in temporal order.
//!   - *Padding* (lines 29-33): a list still short of 11 is padded with copies of the offset frame (zero
//!     flow at the end).
//!
//!   Apex = onset or apex = offset removes one anchor (that side makes nothing). Only the onset, apex and
//!   offset frames are read from disk; everything else is synthesized by the [`FrameInterpolator`].
//!   Worked example (CASME II Happiness-EP05-02, onset 25, apex 91, offset 121, `N_sp = 5`, `N_pe = 3`,
//!   no fill needed): 25, 27, 29, 33, 41, 58, 91, 106, 113, 117, 121.
//!   [`KeyframeFill::WidestGap`] is the rule `mer` used before: frames still missing after bisection go
//!   into the widest gap between consecutive key-frame times (earliest on ties) that has an integer
//!   frame inside, repeatedly, then the same padding. The widest gaps are usually the two next to the
//!   apex, so it weakens the apex's flow; it stays selectable (`mer prep --keyframe-fill widest-gap`) so
//!   that the difference can be measured. The prepared file records the rule (`PrepInfo.keyframe_fill`).
//! - **TAS**: the original frames at the same times as the adaptive plan.
//! - **TIM** (temporal interpolation model, Zhou et al. 2011): the clip onset..offset is embedded on the
//!   path graph and resampled at 11 equally spaced times. With all `n - 1` embedding dimensions the
//!   graph-embedding curve is exactly the cosine (DCT-II) expansion of the frame sequence, since the path
//!   graph Laplacian's eigenvectors are the DCT-II basis; we evaluate that expansion per pixel at the
//!   fractional positions (it reproduces the original frames at integer positions).

use crate::error::{Result, WorkerError};
use crate::prep::datasets::frames::GrayFrame;
use crate::prep::interp::FrameInterpolator;
pub use mer_shared::prepared::KeyframeFill;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Builds the adaptive plan (Algorithm 1, see the module docs) with the given fill rule.
pub fn adaptive_plan(
    ts: u32,
    tp: u32,
    te: u32,
    fill: KeyframeFill,
) -> std::result::Result<Plan, String> {
    check_times(ts, tp, te)?;
    let mut b = PlanBuilder::default();
    for t in [ts, tp, te] {
        b.original(t);
    }
    let n = (te - ts + 1) as u64;
    let n_sp = (((tp - ts + 1) as u64 * 8) / n) as usize;
    let n_pe = 8 - n_sp;
    // Onset side: bisect from the apex towards the onset (`t1 = ts` fixed, `t2` moves).
    let mut onset_side = Vec::new();
    let (t1, mut t2) = (ts, tp);
    while onset_side.len() < n_sp {
        let m = (t1 + t2) / 2;
        if m - t1 <= 1 {
            break;
        }
        let Some(i) = b.mid(m, b.at[&t1], b.at[&t2]) else {
            break;
        };
        onset_side.push(i);
        t2 = m;
    }
    // Offset side: bisect from the apex towards the offset (`t2 = te` fixed, `t1` moves).
    let mut offset_side = Vec::new();
    let (mut t1, t2) = (tp, te);
    while offset_side.len() < n_pe {
        let m = (t1 + t2) / 2;
        if t2 - m <= 1 {
            break;
        }
        let Some(i) = b.mid(m, b.at[&t1], b.at[&t2]) else {
            break;
        };
        offset_side.push(i);
        t1 = m;
    }
    match fill {
        KeyframeFill::Algorithm1 => {
            b.fill_side(&onset_side, n_sp);
            b.fill_side(&offset_side, n_pe);
        }
        KeyframeFill::WidestGap => b.fill_widest_gaps(),
    }
    let PlanBuilder { mut nodes, at } = b;
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

/// The plan under construction: its nodes, and which node holds each time.
#[derive(Default)]
struct PlanBuilder {
    /// Nodes in construction order (a `Mid` only refers to earlier nodes).
    nodes: Vec<Node>,
    /// Time -> node index; every time appears once, so iterating it gives temporal order.
    at: BTreeMap<u32, usize>,
}

impl PlanBuilder {
    /// Adds an original frame (onset, apex or offset) unless its time is already there.
    fn original(&mut self, t: u32) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.at.entry(t) {
            e.insert(self.nodes.len());
            self.nodes.push(Node {
                time: t,
                source: Source::Original,
            });
        }
    }

    /// Adds the frame at `m` synthesized from nodes `a` and `b` (in either order: the earlier one is
    /// passed to the interpolator first); `None` when `m` is already in the plan.
    fn mid(&mut self, m: u32, a: usize, b: usize) -> Option<usize> {
        if self.at.contains_key(&m) {
            return None;
        }
        let (a, b) = if self.nodes[a].time <= self.nodes[b].time {
            (a, b)
        } else {
            (b, a)
        };
        let idx = self.nodes.len();
        self.nodes.push(Node {
            time: m,
            source: Source::Mid(a, b),
        });
        self.at.insert(m, idx);
        Some(idx)
    }

    /// Algorithm 1's fill pass (lines 13-21) over one side's generated nodes, in the order they were
    /// made, until the side has `count` frames.
    fn fill_side(&mut self, generated: &[usize], count: usize) {
        let mut have = generated.len();
        for w in generated.windows(2) {
            if have >= count {
                break;
            }
            let (prev, next) = (self.nodes[w[0]].time, self.nodes[w[1]].time);
            let m = (prev + next) / 2;
            if m.abs_diff(prev) > 1 && self.mid(m, w[0], w[1]).is_some() {
                have += 1;
            }
        }
    }

    /// The widest-gap fill ([`KeyframeFill::WidestGap`]): the widest gap between consecutive times that
    /// holds an integer frame (earliest on ties) gets its floor midpoint, until there are 11 frames.
    fn fill_widest_gaps(&mut self) {
        while self.nodes.len() < KEYFRAMES {
            let times: Vec<u32> = self.at.keys().copied().collect();
            let best = times
                .windows(2)
                .filter(|w| w[1] - w[0] >= 2)
                .max_by(|a, b| {
                    (a[1] - a[0])
                        .cmp(&(b[1] - b[0]))
                        .then_with(|| b[0].cmp(&a[0]))
                });
            let Some(w) = best else { break };
            let (ia, ib) = (self.at[&w[0]], self.at[&w[1]]);
            if self.mid((w[0] + w[1]) / 2, ia, ib).is_none() {
                break;
            }
        }
    }
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

    use rand::{Rng, SeedableRng};

    fn times(ts: u32, tp: u32, te: u32) -> Vec<u32> {
        adaptive_plan(ts, tp, te, KeyframeFill::Algorithm1)
            .unwrap()
            .times()
    }

    #[test]
    fn worked_example_of_the_paper() {
        // N = 97, N_sp = floor(67 * 8 / 97) = 5, N_pe = 3. Onset side: 58, 41, 33, 29, 27 (27 - 25 = 2 > 1,
        // so the fifth bisection still counts); offset side: 106, 113, 117. No fill is needed.
        let p = adaptive_plan(25, 91, 121, KeyframeFill::Algorithm1).unwrap();
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
        // Both rules agree where bisection does not run out.
        assert_eq!(
            adaptive_plan(25, 91, 121, KeyframeFill::WidestGap).unwrap(),
            p
        );
    }

    #[test]
    fn fill_pass_stays_away_from_the_apex() {
        // N = 28, N_sp = floor(14 * 8 / 28) = 4, N_pe = 4.
        // Onset side: m = 54, 51, then m = 49 is one frame from the onset: bisection ran out with 2 of 4.
        // Fill pass over T' = (54, 51): floor((54 + 51) / 2) = 52, |52 - 54| = 2 > 1 -> 52 (3 of 4); the
        // pass has no more pairs. Offset side: 68, 71, 73, then m = 74 is one frame from the offset.
        // Fill pass over (68, 71, 73): 69 and 72 lie one frame from 68 and 71 -> nothing. 9 frames, padded
        // with the offset. Nothing lies between 54 and the apex 61, or between 61 and 68.
        assert_eq!(
            times(48, 61, 75),
            vec![48, 51, 52, 54, 61, 68, 71, 73, 75, 75, 75]
        );
        let p = adaptive_plan(48, 61, 75, KeyframeFill::Algorithm1).unwrap();
        let idx = |t: u32| p.nodes.iter().position(|n| n.time == t).unwrap();
        assert_eq!(p.nodes[idx(52)].source, Source::Mid(idx(51), idx(54)));
        // The widest-gap rule (the old default) puts 57 and 59 next to the apex, 64 after it.
        assert_eq!(
            adaptive_plan(48, 61, 75, KeyframeFill::WidestGap)
                .unwrap()
                .times(),
            vec![48, 51, 54, 57, 59, 61, 64, 68, 71, 73, 75]
        );
        // N = 57, N_sp = floor(29 * 8 / 57) = 4, N_pe = 4. Onset side: 287, 280, 276, then 274 is one frame
        // from the onset (3 of 4). Fill: the first pair (287, 280) gives 283 (|283 - 287| = 4), which
        // completes the side. Offset side: 315, 322, 325, 327 (329 - 327 = 2 > 1): complete.
        assert_eq!(
            times(273, 301, 329),
            vec![273, 276, 280, 283, 287, 301, 315, 322, 325, 327, 329]
        );
        let old = adaptive_plan(273, 301, 329, KeyframeFill::WidestGap)
            .unwrap()
            .times();
        assert!(old.contains(&294) && !old.contains(&283), "{old:?}");
    }

    #[test]
    fn short_clips_pad_with_the_offset() {
        // N = 7, N_sp = N_pe = 4. Onset side: m = 1 is one frame from the onset: nothing. Offset side:
        // 4 (6 - 4 = 2 > 1), then 5 is one frame from the offset. One generated frame, no pair to fill.
        assert_eq!(times(0, 3, 6), vec![0, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6]);
        // N = 11, N_sp = floor(6 * 8 / 11) = 4, N_pe = 4. Onset: 102, then 101 runs out. Offset: 107, 108,
        // then 109 runs out; the pair (107, 108) has floor midpoint 107 = T'[t-1]: no fill.
        assert_eq!(
            times(100, 105, 110),
            vec![100, 102, 105, 107, 108, 110, 110, 110, 110, 110, 110]
        );
        // Three frames: N_sp = floor(2 * 8 / 3) = 5, N_pe = 3, but both sides run out at once.
        assert_eq!(times(0, 1, 2), vec![0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
        // One frame: onset = apex = offset.
        let p = adaptive_plan(7, 7, 7, KeyframeFill::Algorithm1).unwrap();
        assert_eq!(p.times(), vec![7; 11]);
        assert_eq!(p.nodes[*p.order.last().unwrap()].source, Source::PadOffset);
    }

    #[test]
    fn apex_at_onset_or_offset() {
        // Apex = onset: N = 21, N_sp = floor(1 * 8 / 21) = 0, N_pe = 8. Offset side: 20, 25, 27, 28, then 29
        // is one frame from the offset (4 of 8). Fill over (20, 25, 27, 28): 22 (|22 - 20| = 2); 26 and 27
        // lie one frame or less from 25 and 27. 5 of 8 -> 7 frames, padded with 4 copies of the offset.
        assert_eq!(
            times(10, 10, 30),
            vec![10, 20, 22, 25, 27, 28, 30, 30, 30, 30, 30]
        );
        // Apex = offset: N_sp = 8, N_pe = 0. Onset side: 20, 15, 12, then 11 runs out (3 of 8). Fill over
        // (20, 15, 12): 17 (|17 - 20| = 3), 13 (|13 - 15| = 2). 5 of 8 -> padded with the offset (= apex).
        assert_eq!(
            times(10, 30, 30),
            vec![10, 12, 13, 15, 17, 20, 30, 30, 30, 30, 30]
        );
        // Apex = onset on a short clip: N = 6, N_sp = floor(8 / 6) = 1, but the onset side has no room.
        // Offset side: 2, 3, then 4 runs out; the pair (2, 3) gives 2 = T'[t-1]: no fill.
        assert_eq!(times(0, 0, 5), vec![0, 2, 3, 5, 5, 5, 5, 5, 5, 5, 5]);
        let err = |a, b, c| adaptive_plan(a, b, c, KeyframeFill::Algorithm1).unwrap_err();
        assert!(err(10, 31, 30).contains("apex 31"));
        assert!(err(10, 9, 30).contains("apex 9"));
        assert!(err(10, 10, 9).contains("before onset"));
    }

    #[test]
    fn smic_like_clips_with_the_middle_frame_as_apex() {
        // 21 frames at 100 fps, apex = middle: N_sp = floor(11 * 8 / 21) = 4, N_pe = 4. Onset side: 6, 3,
        // then 2 runs out; fill (6, 3) -> 4 (|4 - 6| = 2): 3 of 4. Offset side: 16, 18, 19, then 20 runs
        // out; fill (16, 18) -> 17 and (18, 19) -> 18 lie one frame or less from 16 and 18: 3 of 4.
        assert_eq!(
            times(1, 11, 21),
            vec![1, 3, 4, 6, 11, 16, 18, 19, 21, 21, 21]
        );
        // 41 frames, apex 20: N_sp = floor(21 * 8 / 41) = 4, N_pe = 4. Onset: 10, 5, 2, then 1 runs out;
        // fill (10, 5) -> 7 (|7 - 10| = 3) completes it. Offset: 30, 35, 37, 38 (40 - 38 = 2 > 1).
        assert_eq!(
            times(0, 20, 40),
            vec![0, 2, 5, 7, 10, 20, 30, 35, 37, 38, 40]
        );
        // A long clip needs no fill: N = 201, N_sp = floor(51 * 8 / 201) = 2, N_pe = 6.
        assert_eq!(
            times(0, 50, 200),
            vec![0, 12, 25, 50, 125, 162, 181, 190, 195, 197, 200]
        );
    }

    #[test]
    fn random_clips_keep_algorithm_1s_invariants() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for _ in 0..20_000 {
            let ts: u32 = rng.random_range(0..500);
            let len: u32 = if rng.random_bool(0.5) {
                rng.random_range(0..30)
            } else {
                rng.random_range(0..400)
            };
            let te = ts + len;
            let tp = rng.random_range(ts..=te);
            let p = adaptive_plan(ts, tp, te, KeyframeFill::Algorithm1).unwrap();
            let t = p.times();
            let case = format!("({ts}, {tp}, {te}) -> {t:?}");
            assert_eq!(t.len(), KEYFRAMES, "{case}");
            assert!(t.windows(2).all(|w| w[0] <= w[1]), "{case}");
            assert_eq!((t[0], t[10]), (ts, te), "{case}");
            assert!(t.contains(&tp), "{case}");
            let synth: Vec<u32> = p
                .nodes
                .iter()
                .filter(|n| matches!(n.source, Source::Mid(..)))
                .map(|n| n.time)
                .collect();
            assert!(synth.len() <= 8, "{case}");
            let n = te - ts + 1;
            let n_sp = ((tp - ts + 1) * 8 / n) as usize;
            let before: Vec<u32> = synth.iter().copied().filter(|&m| m < tp).collect();
            let after: Vec<u32> = synth.iter().copied().filter(|&m| m > tp).collect();
            // Every generated time lies strictly inside its side, and each side keeps its count.
            assert_eq!(before.len() + after.len(), synth.len(), "{case}");
            assert!(before.iter().all(|&m| m > ts), "{case}");
            assert!(after.iter().all(|&m| m < te), "{case}");
            assert!(before.len() <= n_sp && after.len() <= 8 - n_sp, "{case}");
            // Nothing lies between the apex and the first frame bisection made on either side, which is
            // the midpoint of the apex and the onset (offset).
            if let Some(&near) = before.iter().max() {
                assert_eq!(near, (ts + tp) / 2, "{case}");
            }
            if let Some(&near) = after.iter().min() {
                assert_eq!(near, (tp + te) / 2, "{case}");
            }
            // Padding only with the offset, and only after every distinct time.
            let distinct: std::collections::BTreeSet<u32> = t.iter().copied().collect();
            let pads: Vec<&Node> = p
                .order
                .iter()
                .map(|&i| &p.nodes[i])
                .filter(|n| n.source == Source::PadOffset)
                .collect();
            assert_eq!(distinct.len() + pads.len(), KEYFRAMES, "{case}");
            assert!(pads.iter().all(|n| n.time == te), "{case}");
            // Every synthesized frame is made from frames already in the plan.
            for (i, node) in p.nodes.iter().enumerate() {
                if let Source::Mid(a, b) = node.source {
                    assert!(a < i && b < i, "{case}");
                    assert!(
                        p.nodes[a].time < node.time && node.time < p.nodes[b].time,
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn widest_gap_fill_still_gives_its_old_plans() {
        let w = |a, b, c| {
            adaptive_plan(a, b, c, KeyframeFill::WidestGap)
                .unwrap()
                .times()
        };
        assert_eq!(w(0, 3, 6), vec![0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6]);
        assert_eq!(w(100, 105, 110), (100..=110).collect::<Vec<_>>());
        let p = w(10, 10, 30);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
        for t in [20, 25, 27, 28] {
            assert!(p.contains(&t), "{p:?}");
        }
        for (ts, tp, te) in [(0, 0, 5), (0, 5, 5), (3, 4, 12), (10, 11, 20), (0, 1, 2)] {
            let t = w(ts, tp, te);
            let distinct: std::collections::BTreeSet<_> = t.iter().collect();
            assert_eq!(distinct.len(), (te - ts + 1).min(11) as usize, "{t:?}");
        }
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
        let p = adaptive_plan(25, 91, 121, KeyframeFill::Algorithm1).unwrap();
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
        let short = adaptive_plan(0, 3, 6, KeyframeFill::WidestGap).unwrap();
        let f = build_adaptive(&short, |t| Ok(GrayFrame::filled(1, 1, t as f32)), &Avg).unwrap();
        assert_eq!(
            f.iter().map(|f| f.data[0]).collect::<Vec<_>>(),
            vec![0.0, 1.5, 2.25, 3.0, 4.5, 5.25, 6.0, 6.0, 6.0, 6.0, 6.0]
        );
        // Algorithm 1's plan of the same clip: 4 is made from the apex 3 and the offset 6.
        let short = adaptive_plan(0, 3, 6, KeyframeFill::Algorithm1).unwrap();
        let f = build_adaptive(&short, |t| Ok(GrayFrame::filled(1, 1, t as f32)), &Avg).unwrap();
        assert_eq!(
            f.iter().map(|f| f.data[0]).collect::<Vec<_>>(),
            vec![0.0, 3.0, 4.5, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
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
