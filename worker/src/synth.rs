//! Synthetic micro-expression datasets in the REAL on-disk layouts of CASME II, SAMM and SMIC-HS, so that
//! the real readers are what reads them (tests, demo, benchmarks; nobody here may hold the real datasets).
//!
//! Faces are drawn procedurally with soft (anti-aliased, sub-pixel) shapes: each subject has its own face
//! shape, feature geometry, skin tone, skin texture and lighting. A clip runs onset -> apex -> offset with
//! real ME timing (40-500 ms at 200 fps for CASME II/SAMM, 100 fps for SMIC) and carries ONE class-specific,
//! localized, low-amplitude facial action whose intensity rises smoothly to the apex and mostly decays by
//! the offset:
//! - positive: lip-corner pull (AU12: corners out and up, cheeks raised);
//! - surprise: brow raise (AU1+2) with slightly widened eyes;
//! - negative: one of brow lowering (AU4: brows down and inward), nose wrinkle (AU9: nostrils up, a crease
//!   between the brows) or lip-corner depression (AU15: corners down);
//! - others (CASME II/SAMM only, no megc3 label): chin raise (AU17: mouth up).
//!
//! The base amplitude is about 7 % of the face half-width (3-4 px at 112 x 112), scaled per clip by an
//! intensity drawn from [`SynthOptions::intensity`]; with [`SynthOptions::co_action`] a clip also carries a
//! weaker action of another class (co-occurring action units). `tiny` keeps clear single actions, `mini`
//! and `composite` draw faint to moderate ones, most with a co-occurring action. Distractors carry no label and
//! appear in every class alike: smooth head jitter (about 0.5 px), blinks, sensor noise (sigma 2 grey
//! levels) and illumination drift (+-4 %).
//!
//! Layouts written under `out/`: `casme2/` (coding workbook, objective-class workbook,
//! `CASME2_RAW_selected/subNN/<clip>/imgN.jpg` or `Cropped/.../reg_imgN.jpg`), `samm/`
//! (`SAMM_Micro_FACS_Codes_v2.xlsx` with its 13-row preamble, `SAMM/006/006_1_2/006_0NNNN.jpg` with 4- or
//! 5-digit padding alternating between clips), `smic/` (`HS/sN/micro/<class>/sN_ne_01/reg_imageNNNNNN.bmp`),
//! and with [`SynthOptions::smic_e`] `smic-e/` (`SMIC-HS-E_annotation.xlsx`, `SMIC-HS-E/sNN/sN_sur_01/imageN.jpg`).
//! Workbooks are written with `rust_xlsxwriter`; frames with OpenCV's imgcodecs. `synth.json` records the
//! ground truth of every clip.

use crate::error::{Result, WorkerError};
use mer_shared::composite::composite_list;
use mer_shared::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A size preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// For tests: 3 subjects per dataset, one clip per megc3 class each (+1 CASME II `others` clip),
    /// short clips, small frames. Seconds.
    Tiny,
    /// The demo: 48 clips over 10 subjects.
    Mini,
    /// Exactly the 442 clips / 68 subjects / names and labels of the official MEGC2019 list.
    Composite,
}

impl FromStr for Preset {
    type Err = WorkerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Preset::Tiny),
            "mini" => Ok(Preset::Mini),
            "composite" => Ok(Preset::Composite),
            _ => Err(WorkerError::InvalidOption {
                option: "--preset".into(),
                message: format!("'{s}' is not tiny, mini or composite"),
            }),
        }
    }
}

/// Which frame layout the synthetic CASME II uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Casme2Layout {
    /// `CASME2_RAW_selected/subNN/<clip>/imgN.jpg`.
    RawSelected,
    /// `Cropped/subNN/<clip>/reg_imgN.jpg`.
    Cropped,
}

/// Generator options beyond the preset.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Size preset.
    pub preset: Preset,
    /// Seed of every random choice.
    pub seed: u64,
    /// CASME II frame layout.
    pub casme2_layout: Casme2Layout,
    /// Also write the SMIC-E layout (same subjects/clips as SMIC, extended frames + annotation workbook).
    pub smic_e: bool,
    /// Range of each clip's action intensity, as a multiple of the base amplitude (7.5 % of the face
    /// half-width); drawn uniformly per clip. Real micro-expressions range from barely visible to clear.
    pub intensity: (f32, f32),
    /// Probability that a clip also carries a weaker action (30-60 % of its own) that belongs to another
    /// class, as co-occurring action units do in real clips.
    pub co_action: f64,
}

impl SynthOptions {
    /// The defaults of a preset: RAW_selected layout, no SMIC-E. `tiny` (the tests' set) has clear,
    /// single actions (intensity 0.85-1.15, no co-occurring action); `mini` and `composite` have faint to
    /// moderate ones (0.12-0.8, i.e. 0.4-3 px at 112 x 112) and a weaker co-occurring action of another
    /// class in 70 % of the clips, so that a model has something left to learn (the demo's small model
    /// scores UF1 about 0.8-0.87 on `mini`, not 1.0).
    pub fn new(preset: Preset, seed: u64) -> Self {
        let (intensity, co_action) = match preset {
            Preset::Tiny => ((0.85, 1.15), 0.0),
            Preset::Mini | Preset::Composite => ((0.12, 0.8), 0.7),
        };
        SynthOptions {
            preset,
            seed,
            casme2_layout: Casme2Layout::RawSelected,
            smic_e: false,
            intensity,
            co_action,
        }
    }

    /// Checks the knobs: `0 < min <= max <= 3` for the intensity, a probability for `co_action`.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.intensity;
        if !(lo > 0.0 && lo <= hi && hi <= 3.0) {
            return Err(WorkerError::InvalidOption {
                option: "--intensity".into(),
                message: format!("{lo},{hi}: expected MIN,MAX with 0 < MIN <= MAX <= 3"),
            });
        }
        if !(0.0..=1.0).contains(&self.co_action) {
            return Err(WorkerError::InvalidOption {
                option: "--co-action".into(),
                message: format!("{}: expected a probability in [0, 1]", self.co_action),
            });
        }
        Ok(())
    }
}

/// What the generator wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    /// Preset used.
    pub preset: Preset,
    /// Seed used.
    pub seed: u64,
    /// Intensity range used ([`SynthOptions::intensity`]).
    #[serde(default)]
    pub intensity: (f32, f32),
    /// Co-occurring action probability used ([`SynthOptions::co_action`]).
    #[serde(default)]
    pub co_action: f64,
    /// CASME II root (pass to `mer prep --casme2`).
    pub casme2: PathBuf,
    /// SAMM root (`--samm`).
    pub samm: PathBuf,
    /// SMIC-HS root, original layout (`--smic`).
    pub smic: PathBuf,
    /// SMIC-E root when written (`--smic-e`).
    pub smic_e: Option<PathBuf>,
    /// Number of clips per dataset key.
    pub clips: std::collections::BTreeMap<String, usize>,
    /// Number of subjects per dataset key.
    pub subjects: std::collections::BTreeMap<String, usize>,
    /// Number of frame files written.
    pub frames_written: usize,
    /// Ground truth of every clip.
    pub truth: Vec<ClipTruth>,
}

/// The facial action of a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// AU12 lip-corner pull (positive).
    LipCornerPull,
    /// AU1+2 brow raise (surprise).
    BrowRaise,
    /// AU4 brow lowering (negative).
    BrowLower,
    /// AU9 nose wrinkle (negative).
    NoseWrinkle,
    /// AU15 lip-corner depression (negative).
    LipCornerDepress,
    /// AU17 chin raise (others).
    ChinRaise,
}

impl Action {
    /// Every action drawn.
    pub const ALL: [Action; 6] = [
        Action::LipCornerPull,
        Action::BrowRaise,
        Action::BrowLower,
        Action::NoseWrinkle,
        Action::LipCornerDepress,
        Action::ChinRaise,
    ];

    /// The megc3 class an action stands for (0 negative, 1 positive, 2 surprise; `None` for others).
    pub fn megc3(self) -> Option<usize> {
        match self {
            Action::LipCornerPull => Some(1),
            Action::BrowRaise => Some(2),
            Action::BrowLower | Action::NoseWrinkle | Action::LipCornerDepress => Some(0),
            Action::ChinRaise => None,
        }
    }

    fn objective_class(self) -> u32 {
        match self {
            Action::LipCornerPull => 1,
            Action::BrowRaise => 2,
            Action::BrowLower => 3,
            Action::LipCornerDepress => 4,
            Action::NoseWrinkle => 5,
            Action::ChinRaise => 7,
        }
    }

    fn aus(self) -> &'static str {
        match self {
            Action::LipCornerPull => "6+12",
            Action::BrowRaise => "1+2",
            Action::BrowLower => "4",
            Action::NoseWrinkle => "9",
            Action::LipCornerDepress => "15",
            Action::ChinRaise => "17",
        }
    }
}

/// Ground truth of one generated clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTruth {
    /// Dataset part.
    pub dataset: Dataset,
    /// Subject, composite spelling.
    pub subject: String,
    /// Clip name, composite spelling.
    pub filename: String,
    /// megc3 class (None for `others`).
    pub megc3: Option<usize>,
    /// Emotion written to the annotation.
    pub emotion: String,
    /// The facial action drawn.
    pub action: Action,
    /// Onset, apex, offset frame numbers.
    pub onset: u32,
    /// Apex frame number (SMIC: the middle frame, which is also where the action peaks).
    pub apex: u32,
    /// Offset frame number.
    pub offset: u32,
    /// The action's intensity, as a multiple of the base amplitude.
    #[serde(default)]
    pub intensity: f32,
    /// A weaker action of another class in the same clip, and its strength relative to the main one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_action: Option<(Action, f32)>,
}

/// Per-subject face appearance.
#[derive(Debug, Clone)]
struct Face {
    w: usize,
    h: usize,
    cx: f32,
    cy: f32,
    a: f32,
    b: f32,
    skin: f32,
    bg: f32,
    bg_grad: f32,
    light: (f32, f32),
    tex: [(f32, f32, f32, f32); 3],
    eye_dx: f32,
    eye_y: f32,
    brow_y: f32,
    mouth_y: f32,
    mouth_w: f32,
    dark: f32,
}

impl Face {
    fn random(rng: &mut ChaCha8Rng, w: usize, h: usize) -> Self {
        let b = h as f32 * rng.random_range(0.36..0.40);
        let a = b * rng.random_range(0.74..0.82);
        let mut tex = [(0.0, 0.0, 0.0, 0.0); 3];
        for t in tex.iter_mut() {
            *t = (
                rng.random_range(0.15..0.6),
                rng.random_range(0.15..0.6),
                rng.random_range(0.0..std::f32::consts::TAU),
                rng.random_range(0.015..0.035),
            );
        }
        Face {
            w,
            h,
            cx: w as f32 / 2.0 + rng.random_range(-0.03..0.03) * w as f32,
            cy: h as f32 * rng.random_range(0.50..0.54),
            a,
            b,
            skin: rng.random_range(150.0..200.0),
            bg: rng.random_range(35.0..75.0),
            bg_grad: rng.random_range(-20.0..20.0),
            light: (rng.random_range(-0.12..0.12), rng.random_range(-0.08..0.04)),
            tex,
            eye_dx: rng.random_range(0.34..0.40),
            eye_y: rng.random_range(-0.18..-0.12),
            brow_y: rng.random_range(-0.40..-0.34),
            mouth_y: rng.random_range(0.48..0.55),
            mouth_w: rng.random_range(0.20..0.26),
            dark: rng.random_range(0.5..0.65),
        }
    }
}

/// Everything needed to render one clip.
#[derive(Debug, Clone)]
struct ClipPlan {
    truth: ClipTruth,
    face_idx: usize,
    fps: u32,
    first: u32,
    last: u32,
    amplitude: f32,
    blink: Option<(f32, f32)>,
    jitter: [(f32, f32, f32); 4],
    drift: (f32, f32),
    seed: u64,
    dir: PathBuf,
    name: FrameName,
    color: bool,
}

#[derive(Debug, Clone)]
enum FrameName {
    Prefix(String, String),
    Padded(String, usize, String),
}

impl FrameName {
    fn file(&self, n: u32) -> String {
        match self {
            FrameName::Prefix(p, ext) => format!("{p}{n}.{ext}"),
            FrameName::Padded(p, w, ext) => format!("{p}{n:0w$}.{ext}", w = *w),
        }
    }
}

fn smoothstep(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Action intensity at frame t: 0 before onset, smooth rise to 1 at the apex, decay to 0.2 at the offset,
/// then back to 0 over 10 frames.
fn intensity(t: f32, on: f32, ap: f32, off: f32) -> f32 {
    if t <= on {
        0.0
    } else if t <= ap {
        if ap > on {
            smoothstep((t - on) / (ap - on))
        } else {
            1.0
        }
    } else if t <= off {
        1.0 - 0.8 * smoothstep((t - ap) / (off - ap).max(1.0))
    } else {
        0.2 * (1.0 - (t - off) / 10.0).max(0.0)
    }
}

/// A soft ellipse feature: multiplies pixels by (1 - dark * weight), weight 1 inside, 0 outside, with a
/// 1-pixel soft edge (so sub-pixel motion changes pixel values smoothly).
#[allow(clippy::too_many_arguments)]
fn blob(
    img: &mut [f32],
    w: usize,
    h: usize,
    x0: f32,
    y0: f32,
    rx: f32,
    ry: f32,
    angle: f32,
    dark: f32,
) {
    let (rx, ry) = (rx.max(0.5), ry.max(0.5));
    let r = rx.max(ry) + 2.0;
    let (c, s) = (angle.cos(), angle.sin());
    let xa = ((x0 - r).floor().max(0.0)) as usize;
    let xb = ((x0 + r).ceil().min(w as f32 - 1.0)).max(0.0) as usize;
    let ya = ((y0 - r).floor().max(0.0)) as usize;
    let yb = ((y0 + r).ceil().min(h as f32 - 1.0)).max(0.0) as usize;
    for y in ya..=yb {
        for x in xa..=xb {
            let (dx, dy) = (x as f32 - x0, y as f32 - y0);
            let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
            // Approximate distance to the ellipse boundary in pixels.
            let q = ((u / rx).powi(2) + (v / ry).powi(2)).sqrt();
            let dist = (q - 1.0) * rx.min(ry);
            let wgt = (0.5 - dist).clamp(0.0, 1.0);
            if wgt > 0.0 {
                img[y * w + x] *= 1.0 - dark * wgt;
            }
        }
    }
}

/// Renders frame `t` of a clip (grey levels 0..255, before noise).
fn render(face: &Face, p: &ClipPlan, t: u32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let (w, h) = (face.w, face.h);
    let tf = t as f32;
    let tr = &p.truth;
    let s = intensity(tf, tr.onset as f32, tr.apex as f32, tr.offset as f32);
    // Smooth head jitter (time in seconds so that it is the same physical motion at any fps).
    let sec = tf / p.fps as f32;
    let (mut jx, mut jy) = (0.0, 0.0);
    for (k, &(amp, freq, ph)) in p.jitter.iter().enumerate() {
        let v = amp * (std::f32::consts::TAU * freq * sec + ph).sin();
        if k % 2 == 0 {
            jx += v;
        } else {
            jy += v;
        }
    }
    let gain = 1.0 + p.drift.0 * (std::f32::consts::TAU * sec * 1.3 + p.drift.1).sin();
    let (cx, cy, a, b) = (face.cx + jx, face.cy + jy, face.a, face.b);
    let mut img = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = ((x as f32 - cx) / a, (y as f32 - cy) / b);
            let r = (u * u + v * v).sqrt();
            let bgv = face.bg + face.bg_grad * (x as f32 / w as f32 - 0.5);
            // Soft face edge (about 1.5 px).
            let m = ((1.0 - r) * a.min(b) / 1.5 + 0.5).clamp(0.0, 1.0);
            let mut tex = 0.0;
            for &(fx, fy, ph, amp) in &face.tex {
                tex += amp * (fx * u * a * 0.25 + fy * v * b * 0.25 + ph).sin();
            }
            let shade = 1.0 - 0.22 * r * r + face.light.0 * u + face.light.1 * v;
            let skin = face.skin * shade * (1.0 + tex);
            // Hair: darker band over the top of the head.
            let hair = if v < -0.62 {
                smoothstep((-0.62 - v) / 0.1) * 0.55
            } else {
                0.0
            };
            img[y * w + x] = bgv * (1.0 - m) + skin * (1.0 - hair) * m;
        }
    }
    let amp = p.amplitude;
    let act = tr.action;
    let on = |a2: Action| {
        let main = if act == a2 { s } else { 0.0 };
        match tr.co_action {
            Some((co, k)) if co == a2 => main + k * s,
            _ => main,
        }
    };
    // Blink: eye openness.
    let open = match p.blink {
        Some((c, d)) => 1.0 - 0.85 * (1.0 - ((tf - c) / d).abs()).max(0.0),
        None => 1.0,
    };
    let d = face.dark;
    for side in [-1.0f32, 1.0] {
        // Brows.
        let (bdx, bdy) = (
            -side * 0.45 * amp * on(Action::BrowLower),
            0.8 * amp * on(Action::BrowLower) - 1.2 * amp * on(Action::BrowRaise),
        );
        let tilt = side * 0.08 + side * 0.15 * on(Action::BrowLower);
        blob(
            &mut img,
            w,
            h,
            cx + side * face.eye_dx * a + bdx,
            cy + face.brow_y * b + bdy,
            0.21 * a,
            0.045 * b,
            tilt,
            d,
        );
        // Eyes: socket shadow, bright sclera, dark iris, upper lid line.
        let ey = cy + face.eye_y * b;
        let widen = 1.0 + 0.3 * on(Action::BrowRaise);
        let ex = cx + side * face.eye_dx * a;
        let eh = 0.065 * b * open * widen;
        blob(
            &mut img,
            w,
            h,
            ex,
            ey - 0.01 * b,
            0.2 * a,
            0.11 * b,
            0.0,
            0.18,
        );
        blob(&mut img, w, h, ex, ey, 0.15 * a, eh, 0.0, -0.35);
        blob(&mut img, w, h, ex, ey, 0.06 * a, eh.min(0.06 * a), 0.0, 0.8);
        blob(&mut img, w, h, ex, ey - eh, 0.16 * a, 0.018 * b, 0.0, 0.55);
        // Nostrils (up with the nose wrinkle).
        blob(
            &mut img,
            w,
            h,
            cx + side * 0.09 * a,
            cy + 0.24 * b - 1.0 * amp * on(Action::NoseWrinkle),
            0.05 * a,
            0.03 * b,
            0.0,
            0.45,
        );
        // Cheeks: slight highlight, raised with the smile.
        blob(
            &mut img,
            w,
            h,
            cx + side * 0.45 * a,
            cy + 0.2 * b - 0.5 * amp * on(Action::LipCornerPull),
            0.17 * a,
            0.11 * b,
            0.0,
            -0.06,
        );
        // Lip corners.
        let ldx = side * 0.6 * amp * on(Action::LipCornerPull);
        let ldy = -amp * on(Action::LipCornerPull) + 1.3 * amp * on(Action::LipCornerDepress)
            - 0.6 * amp * on(Action::ChinRaise);
        blob(
            &mut img,
            w,
            h,
            cx + side * (face.mouth_w + 0.06) * a + ldx,
            cy + face.mouth_y * b + ldy,
            0.08 * a,
            0.035 * b,
            side * 0.2,
            d * 0.9,
        );
    }
    // Nose ridge highlight and the crease of the nose wrinkle.
    blob(
        &mut img,
        w,
        h,
        cx,
        cy + 0.02 * b,
        0.07 * a,
        0.22 * b,
        0.0,
        -0.08,
    );
    blob(
        &mut img,
        w,
        h,
        cx,
        cy + (face.eye_y - 0.02) * b,
        0.09 * a,
        0.02 * b,
        0.0,
        0.45 * on(Action::NoseWrinkle),
    );
    // Mouth (moves up with the chin raise).
    blob(
        &mut img,
        w,
        h,
        cx,
        cy + face.mouth_y * b - 0.6 * amp * on(Action::ChinRaise),
        face.mouth_w * a,
        0.045 * b,
        0.0,
        d,
    );
    // Illumination drift and sensor noise.
    let noise = Normal::new(0.0f32, 2.0).unwrap_or_else(|_| unreachable!());
    for v in img.iter_mut() {
        *v = (*v * gain + noise.sample(rng)).clamp(0.0, 255.0);
    }
    img
}

fn write_frame(path: &Path, img: &[f32], w: usize, h: usize, color: bool) -> Result<()> {
    use opencv::core::{Mat, Vector};
    use opencv::prelude::*;
    let cv = |e| WorkerError::cv(format!("writing {}", path.display()), e);
    let bytes: Vec<u8> = if color {
        // A warm skin tint (BGR); reading it back as grey gives about the drawn level.
        img.iter()
            .flat_map(|&v| {
                [
                    (v * 0.82).round() as u8,
                    (v * 0.97).round() as u8,
                    (v * 1.08).round().min(255.0) as u8,
                ]
            })
            .collect()
    } else {
        img.iter().map(|&v| v.round() as u8).collect()
    };
    let m = Mat::new_rows_cols_with_data(h as i32, (w * if color { 3 } else { 1 }) as i32, &bytes)
        .map_err(cv)?;
    let m = if color {
        m.reshape(3, h as i32)
            .map_err(cv)?
            .try_clone()
            .map_err(cv)?
    } else {
        m.try_clone().map_err(cv)?
    };
    let params = Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 95]);
    let ok = opencv::imgcodecs::imwrite(path, &m, &params).map_err(cv)?;
    if !ok {
        return Err(WorkerError::layout(
            path,
            "OpenCV could not write the frame",
        ));
    }
    Ok(())
}

/// A workbook cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text.
    S(String),
    /// Number.
    N(f64),
    /// Empty.
    Blank,
}

/// Writes rows (from spreadsheet row 1) to the first sheet of an xlsx workbook.
pub fn write_xlsx(path: &Path, rows: &[Vec<Cell>]) -> Result<()> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let e = |e: rust_xlsxwriter::XlsxError| WorkerError::Synth(format!("{}: {e}", path.display()));
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            match cell {
                Cell::S(s) => {
                    ws.write_string(r as u32, c as u16, s).map_err(e)?;
                }
                Cell::N(n) => {
                    ws.write_number(r as u32, c as u16, *n).map_err(e)?;
                }
                Cell::Blank => {}
            }
        }
    }
    let bytes = wb.save_to_buffer().map_err(e)?;
    mer_shared::prepared::write_atomic(path, &bytes)?;
    Ok(())
}

struct Sizes {
    w: usize,
    h: usize,
    /// Clip length range in ms.
    ms: (f32, f32),
}

fn sizes(p: Preset) -> Sizes {
    match p {
        Preset::Tiny => Sizes {
            w: 144,
            h: 128,
            ms: (90.0, 180.0),
        },
        Preset::Mini => Sizes {
            w: 160,
            h: 144,
            ms: (100.0, 300.0),
        },
        Preset::Composite => Sizes {
            w: 160,
            h: 140,
            ms: (70.0, 150.0),
        },
    }
}

/// (dataset, subject number, clip label or None for others, clip name override)
type Entry = (Dataset, u32, Option<usize>, Option<String>);

fn entries(preset: Preset) -> Vec<Entry> {
    let mut v = Vec::new();
    match preset {
        Preset::Tiny => {
            for d in [Dataset::Casme2, Dataset::Samm, Dataset::Smic] {
                let subjects: [u32; 3] = match d {
                    Dataset::Samm => [6, 7, 9],
                    _ => [1, 2, 3],
                };
                for s in subjects {
                    for l in 0..3 {
                        v.push((d, s, Some(l), None));
                    }
                }
            }
            v.push((Dataset::Casme2, 1, None, None));
        }
        Preset::Mini => {
            // 4 CASME II + 3 SAMM + 3 SMIC subjects; 16 clips per dataset.
            let plan: [(Dataset, &[u32]); 3] = [
                (Dataset::Casme2, &[1, 2, 3, 4]),
                (Dataset::Samm, &[6, 7, 9]),
                (Dataset::Smic, &[1, 2, 3]),
            ];
            for (d, subs) in plan {
                for i in 0..16usize {
                    let s = subs[i % subs.len()];
                    let l = [0, 1, 2, 0][(i / subs.len()) % 4];
                    v.push((d, s, Some(l), None));
                }
            }
        }
        Preset::Composite => {
            for e in composite_list() {
                let n: u32 = e
                    .subject
                    .trim_start_matches("sub")
                    .trim_start_matches('s')
                    .parse()
                    .unwrap_or(0);
                v.push((e.dataset, n, Some(e.label), Some(e.filename)));
            }
        }
    }
    v
}

fn emotion_for(d: Dataset, action: Action, rng: &mut ChaCha8Rng) -> String {
    let pick = |rng: &mut ChaCha8Rng, xs: &[&str]| xs[rng.random_range(0..xs.len())].to_string();
    match (d, action) {
        (Dataset::Smic, Action::LipCornerPull) => "positive".into(),
        (Dataset::Smic, Action::BrowRaise) => "surprise".into(),
        (Dataset::Smic, _) => "negative".into(),
        (Dataset::Casme2, Action::LipCornerPull) => "happiness".into(),
        (Dataset::Casme2, Action::BrowRaise) => "surprise".into(),
        (Dataset::Casme2, Action::BrowLower) => pick(rng, &["disgust", "repression"]),
        (Dataset::Casme2, Action::NoseWrinkle) => "disgust".into(),
        (Dataset::Casme2, Action::LipCornerDepress) => "repression".into(),
        (Dataset::Casme2, Action::ChinRaise) => "others".into(),
        (Dataset::Samm, Action::LipCornerPull) => "Happiness".into(),
        (Dataset::Samm, Action::BrowRaise) => "Surprise".into(),
        (Dataset::Samm, Action::BrowLower) => pick(rng, &["Anger", "Fear"]),
        (Dataset::Samm, Action::NoseWrinkle) => "Disgust".into(),
        (Dataset::Samm, Action::LipCornerDepress) => pick(rng, &["Contempt", "Sadness"]),
        (Dataset::Samm, Action::ChinRaise) => "Other".into(),
    }
}

/// Generates a preset with its default options into `out_dir`.
pub fn generate(preset: Preset, seed: u64, out_dir: &Path) -> Result<SynthSummary> {
    generate_with(&SynthOptions::new(preset, seed), out_dir)
}

/// Generates a synthetic dataset with explicit options.
pub fn generate_with(opts: &SynthOptions, out_dir: &Path) -> Result<SynthSummary> {
    opts.validate()?;
    let sz = sizes(opts.preset);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let casme_root = out_dir.join("casme2");
    let samm_root = out_dir.join("samm");
    let smic_root = out_dir.join("smic");
    let smice_root = out_dir.join("smic-e");
    for d in [&casme_root, &samm_root, &smic_root] {
        if d.exists() {
            return Err(WorkerError::InvalidOption {
                option: "--out".into(),
                message: format!("{} already exists; use an empty folder", d.display()),
            });
        }
    }
    let mut faces: Vec<Face> = Vec::new();
    let mut face_of: std::collections::BTreeMap<(Dataset, u32), usize> = Default::default();
    let mut plans: Vec<ClipPlan> = Vec::new();
    let mut per_clip_counter: std::collections::BTreeMap<(Dataset, u32), u32> = Default::default();
    let mut smic_class_counter: std::collections::BTreeMap<(u32, usize), u32> = Default::default();
    let mut frame_base = 1000u32;
    for (i, (d, subj, label, name)) in entries(opts.preset).into_iter().enumerate() {
        let face_idx = *face_of.entry((d, subj)).or_insert_with(|| {
            faces.push(Face::random(&mut rng, sz.w, sz.h));
            faces.len() - 1
        });
        let action = match label {
            Some(1) => Action::LipCornerPull,
            Some(2) => Action::BrowRaise,
            Some(_) => [
                Action::BrowLower,
                Action::NoseWrinkle,
                Action::LipCornerDepress,
            ][rng.random_range(0..3)],
            None => Action::ChinRaise,
        };
        let emotion = emotion_for(d, action, &mut rng);
        let k = {
            let c = per_clip_counter.entry((d, subj)).or_insert(0);
            *c += 1;
            *c
        };
        let fps = d.fps();
        let dur_ms = rng.random_range(sz.ms.0..sz.ms.1);
        let nframes = ((dur_ms / 1000.0 * fps as f32).round() as u32).max(6);
        let onset = match d {
            Dataset::Smic => 0,
            _ => rng.random_range(20..400),
        };
        let offset = onset + nframes - 1;
        let (subject, filename, dir, frame_name, first, last, color, onset, offset) = match d {
            Dataset::Casme2 => {
                let subject = format!("sub{subj:02}");
                let filename = name.unwrap_or_else(|| {
                    format!(
                        "EP{:02}_{:02}{}",
                        2 + k,
                        i % 7 + 1,
                        if k % 2 == 0 { "f" } else { "" }
                    )
                });
                let (layout, prefix) = match opts.casme2_layout {
                    Casme2Layout::RawSelected => ("CASME2_RAW_selected", "img"),
                    Casme2Layout::Cropped => ("Cropped", "reg_img"),
                };
                let dir = casme_root.join(layout).join(&subject).join(&filename);
                (
                    subject,
                    filename,
                    dir,
                    FrameName::Prefix(prefix.into(), "jpg".into()),
                    onset,
                    offset,
                    true,
                    onset,
                    offset,
                )
            }
            Dataset::Samm => {
                let subject = format!("{subj}");
                let filename = name.unwrap_or_else(|| format!("{subj:03}_{}_{}", 1 + k % 3, k));
                let dir = samm_root
                    .join("SAMM")
                    .join(format!("{subj:03}"))
                    .join(&filename);
                // Mixed padding between clips: 4 or 5 digits. The folder also holds 3 frames before the
                // onset and after the offset (the annotation, not the folder, delimits the ME).
                let width = if i % 2 == 0 { 4 } else { 5 };
                let on = 1000 + onset;
                (
                    subject,
                    filename,
                    dir,
                    FrameName::Padded(format!("{subj:03}_"), width, "jpg".into()),
                    on - 3,
                    on + nframes + 2,
                    false,
                    on,
                    on + nframes - 1,
                )
            }
            Dataset::Smic => {
                let subject = format!("s{subj:02}");
                let lab = label.unwrap_or(0);
                let abbr = ["ne", "po", "sur"][lab];
                let filename = match name {
                    Some(n) => n,
                    None => {
                        let c = smic_class_counter.entry((subj, lab)).or_insert(0);
                        *c += 1;
                        format!("s{subj:02}_{abbr}_{:02}", *c)
                    }
                };
                let folder = crate::datasets::smic::canonical_clip(&filename).replacen(
                    &format!("s{subj:02}"),
                    &format!("s{subj}"),
                    1,
                );
                let class = crate::datasets::smic::CLASSES[lab];
                let dir = smic_root
                    .join("HS")
                    .join(format!("s{subj}"))
                    .join("micro")
                    .join(class)
                    .join(folder);
                frame_base += 1000;
                let on = 100000 + frame_base * 7;
                (
                    subject,
                    filename,
                    dir,
                    FrameName::Padded("reg_image".into(), 6, "bmp".into()),
                    on,
                    on + nframes - 1,
                    true,
                    on,
                    on + nframes - 1,
                )
            }
        };
        // The apex: 30-60 % into the clip; SMIC's is the middle frame (what readers estimate it to be).
        let apex = match d {
            Dataset::Smic => first + (last - first) / 2,
            _ => onset + ((offset - onset) as f32 * rng.random_range(0.3..0.6)).round() as u32,
        };
        let blink = if rng.random_bool(0.35) {
            let c = rng.random_range(first as f32..=last as f32);
            Some((c, (0.04 * fps as f32).max(2.0)))
        } else {
            None
        };
        let mut jitter = [(0.0, 0.0, 0.0); 4];
        for j in jitter.iter_mut() {
            *j = (
                rng.random_range(0.1..0.3),
                rng.random_range(0.5..4.0),
                rng.random_range(0.0..std::f32::consts::TAU),
            );
        }
        let face = &faces[face_idx];
        let (lo, hi) = opts.intensity;
        let strength = if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        };
        // Only drawn when enabled, so that `tiny` stays the same clips.
        let co_action = if opts.co_action > 0.0 && rng.random_bool(opts.co_action) {
            let others: Vec<Action> = Action::ALL
                .into_iter()
                .filter(|a| a.megc3() != action.megc3() && a.megc3().is_some())
                .collect();
            let co = others[rng.random_range(0..others.len())];
            Some((co, rng.random_range(0.3f32..0.6)))
        } else {
            None
        };
        plans.push(ClipPlan {
            truth: ClipTruth {
                dataset: d,
                subject,
                filename,
                megc3: label,
                emotion,
                action,
                onset,
                apex,
                offset,
                intensity: strength,
                co_action,
            },
            face_idx,
            fps,
            first,
            last,
            amplitude: 0.075 * face.a * strength,
            blink,
            jitter,
            drift: (
                rng.random_range(0.01..0.04),
                rng.random_range(0.0..std::f32::consts::TAU),
            ),
            seed: rng.random(),
            dir,
            name: frame_name,
            color,
        });
    }
    // Render and write every clip in parallel.
    let written: Vec<usize> = plans
        .par_iter()
        .map(|p| -> Result<usize> {
            std::fs::create_dir_all(&p.dir).map_err(|e| WorkerError::io(&p.dir, e))?;
            let face = &faces[p.face_idx];
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
            for t in p.first..=p.last {
                let img = render(face, p, t, &mut rng);
                write_frame(&p.dir.join(p.name.file(t)), &img, face.w, face.h, p.color)?;
            }
            Ok((p.last - p.first + 1) as usize)
        })
        .collect::<Result<Vec<_>>>()?;
    // Annotation workbooks.
    write_casme2_workbooks(&casme_root, &plans)?;
    write_samm_workbook(&samm_root, &plans)?;
    let mut frames_written: usize = written.iter().sum();
    let smic_e = if opts.smic_e {
        frames_written += write_smic_e(&smice_root, &plans, &faces)?;
        Some(smice_root)
    } else {
        None
    };
    let mut clips = std::collections::BTreeMap::new();
    let mut subjects: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for p in &plans {
        *clips.entry(p.truth.dataset.key().to_string()).or_insert(0) += 1;
        subjects
            .entry(p.truth.dataset.key().to_string())
            .or_default()
            .insert(p.truth.subject.clone());
    }
    let summary = SynthSummary {
        preset: opts.preset,
        seed: opts.seed,
        intensity: opts.intensity,
        co_action: opts.co_action,
        casme2: casme_root,
        samm: samm_root,
        smic: smic_root,
        smic_e,
        clips,
        subjects: subjects.into_iter().map(|(k, v)| (k, v.len())).collect(),
        frames_written,
        truth: plans.into_iter().map(|p| p.truth).collect(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| WorkerError::Synth(e.to_string()))?;
    mer_shared::prepared::write_atomic(&out_dir.join("synth.json"), &json)?;
    Ok(summary)
}

fn s(x: impl Into<String>) -> Cell {
    Cell::S(x.into())
}

fn write_casme2_workbooks(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut coding = vec![vec![
        s("Subject"),
        s("Filename"),
        s("Unnamed: 2"),
        s("OnsetFrame"),
        s("ApexFrame"),
        s("OffsetFrame"),
        s("Unnamed: 6"),
        s("Action Units"),
        s("Estimated Emotion"),
    ]];
    let mut objective = vec![vec![s("Subject"), s("Filename"), s("Objective Class")]];
    for p in plans.iter().filter(|p| p.truth.dataset == Dataset::Casme2) {
        let t = &p.truth;
        let n: f64 = t.subject.trim_start_matches("sub").parse().unwrap_or(0.0);
        coding.push(vec![
            Cell::N(n),
            s(&t.filename),
            Cell::Blank,
            Cell::N(t.onset as f64),
            Cell::N(t.apex as f64),
            Cell::N(t.offset as f64),
            Cell::Blank,
            s(t.action.aus()),
            s(&t.emotion),
        ]);
        objective.push(vec![
            Cell::N(n),
            s(&t.filename),
            Cell::N(t.action.objective_class() as f64),
        ]);
    }
    std::fs::create_dir_all(root).map_err(|e| WorkerError::io(root, e))?;
    write_xlsx(&root.join("CASME2-coding-20140508.xlsx"), &coding)?;
    write_xlsx(&root.join("CASME2-ObjectiveClasses.xlsx"), &objective)
}

fn write_samm_workbook(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut rows: Vec<Vec<Cell>> = vec![vec![s(
        "SAMM: Spontaneous Actions and Micro-Movements (synthetic copy written by mer synth)",
    )]];
    rows.extend((1..13).map(|i| {
        if i == 2 {
            vec![s("Micro-movement FACS codes, version 2")]
        } else {
            vec![]
        }
    }));
    rows.push(
        [
            "Subject",
            "Filename",
            "Inducement Code",
            "Onset Frame",
            "Apex Frame",
            "Offset Frame",
            "Duration",
            "Micro",
            "Action Units",
            "Estimated Emotion",
            "Objective Classes",
            "Notes",
        ]
        .iter()
        .map(|h| s(*h))
        .collect(),
    );
    for p in plans.iter().filter(|p| p.truth.dataset == Dataset::Samm) {
        let t = &p.truth;
        let n: f64 = t.subject.parse().unwrap_or(0.0);
        let ind: f64 = t
            .filename
            .split('_')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(1.0);
        rows.push(vec![
            s(format!("{:03}", n as u32)),
            s(&t.filename),
            Cell::N(ind),
            Cell::N(t.onset as f64),
            Cell::N(t.apex as f64),
            Cell::N(t.offset as f64),
            Cell::N((t.offset - t.onset + 1) as f64),
            s("Micro - 1/2"),
            s(t.action.aus()),
            s(&t.emotion),
            Cell::N(t.action.objective_class() as f64),
            Cell::Blank,
        ]);
    }
    std::fs::create_dir_all(root).map_err(|e| WorkerError::io(root, e))?;
    write_xlsx(&root.join("SAMM_Micro_FACS_Codes_v2.xlsx"), &rows)
}

/// SMIC-E: the SMIC clips again, with 4 frames of context before the onset and after the offset,
/// `imageN.jpg` names, `sNN` subject folders, and the annotation workbook.
fn write_smic_e(root: &Path, plans: &[ClipPlan], faces: &[Face]) -> Result<usize> {
    let mut rows = vec![vec![
        s("Subject"),
        s("Filename"),
        s("OnsetF"),
        s("OffsetF"),
        s("Emotion"),
    ]];
    let smic: Vec<&ClipPlan> = plans
        .iter()
        .filter(|p| p.truth.dataset == Dataset::Smic)
        .collect();
    let counts: Vec<usize> = smic
        .par_iter()
        .map(|p| -> Result<usize> {
            let t = &p.truth;
            let n: u32 = t.subject[1..].parse().unwrap_or(0);
            let folder = t.filename.replacen(&t.subject, &format!("s{n}"), 1);
            let dir = root.join("SMIC-HS-E").join(&t.subject).join(folder);
            std::fs::create_dir_all(&dir).map_err(|e| WorkerError::io(&dir, e))?;
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x5eed);
            let face = &faces[p.face_idx];
            for f in p.first - 4..=p.last + 4 {
                let img = render(face, p, f, &mut rng);
                write_frame(
                    &dir.join(format!("image{f}.jpg")),
                    &img,
                    face.w,
                    face.h,
                    true,
                )?;
            }
            Ok((p.last - p.first + 9) as usize)
        })
        .collect::<Result<Vec<_>>>()?;
    for p in &smic {
        let t = &p.truth;
        let n: u32 = t.subject[1..].parse().unwrap_or(0);
        let folder = t.filename.replacen(&t.subject, &format!("s{n}"), 1);
        rows.push(vec![
            s(&t.subject),
            s(folder),
            Cell::N(t.onset as f64),
            Cell::N(t.offset as f64),
            s(&t.emotion),
        ]);
    }
    write_xlsx(&root.join("SMIC-HS-E_annotation.xlsx"), &rows)?;
    Ok(counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_profile() {
        assert_eq!(intensity(10.0, 10.0, 20.0, 30.0), 0.0);
        assert_eq!(intensity(20.0, 10.0, 20.0, 30.0), 1.0);
        assert!((intensity(30.0, 10.0, 20.0, 30.0) - 0.2).abs() < 1e-6);
        assert!(intensity(15.0, 10.0, 20.0, 30.0) > 0.4);
    }

    #[test]
    fn knobs_shape_the_clips_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SynthOptions {
            intensity: (0.2, 0.3),
            co_action: 1.0,
            ..SynthOptions::new(Preset::Tiny, 5)
        };
        let s = generate_with(&opts, &dir.path().join("a")).unwrap();
        assert_eq!((s.intensity, s.co_action), ((0.2, 0.3), 1.0));
        for t in &s.truth {
            assert!((0.2..0.3).contains(&t.intensity), "{t:?}");
            let (co, k) = t.co_action.expect("every clip has a co-occurring action");
            assert!(
                co.megc3().is_some() && co.megc3() != t.action.megc3(),
                "{t:?}"
            );
            assert!((0.3..0.6).contains(&k), "{t:?}");
        }
        // The default tiny has none, and clear actions.
        let d = SynthOptions::new(Preset::Tiny, 5);
        assert_eq!((d.intensity, d.co_action), ((0.85, 1.15), 0.0));
        for (intensity, co_action, flag) in [
            ((0.0, 1.0), 0.0, "--intensity"),
            ((0.9, 0.5), 0.0, "--intensity"),
            ((0.5, 1.0), 1.5, "--co-action"),
        ] {
            let bad = SynthOptions {
                intensity,
                co_action,
                ..SynthOptions::new(Preset::Tiny, 5)
            };
            let e = generate_with(&bad, &dir.path().join("b")).unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
            assert!(
                !dir.path().join("b").exists(),
                "nothing written for bad options"
            );
        }
    }

    #[test]
    fn presets_have_the_promised_sizes() {
        let tiny = entries(Preset::Tiny);
        assert_eq!(tiny.len(), 28);
        let comp = entries(Preset::Composite);
        assert_eq!(comp.len(), 442);
        let mini = entries(Preset::Mini);
        assert_eq!(mini.len(), 48);
        for d in Dataset::ALL {
            for l in 0..3 {
                assert!(mini.iter().any(|e| e.0 == d && e.2 == Some(l)));
            }
        }
    }
}
