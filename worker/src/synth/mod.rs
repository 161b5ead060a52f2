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
//! ground truth of every clip. With [`SynthOptions::newer_parts`] the newer sets' layouts are written too,
//! tiny-sized ([`newer`]): `casme3a/`, `casme3c/`, `4dme/` and `mmew/`.
//!
//! The realistic presets (`realistic-tiny`, `realistic`, `realistic-composite`; [`photo`], [`facs`],
//! `docs/synthetic.md`) keep these layouts and workbooks but draw real face photographs moved by FACS
//! action-unit displacement fields (several AU combinations per class), with label-free blinks, head drift
//! and roll, illumination flicker, sensor noise and JPEG compression, and annotations that are off the true
//! timing as real annotators' are (apex a few frames off, onset and offset jitter); `synth.json` records the
//! true timing and every nuisance beside the annotation.

mod cartoon;
pub mod facs;
mod newer;
pub mod photo;

use crate::error::{Result, WorkerError};
use crate::prep::pipeline::PrepOptions;
use cartoon::{CartoonClip, Face};
use facs::{Au, AuAction};
use mer_shared::composite::composite_list;
use mer_shared::Dataset;
use photo::{FaceBank, Nuisances, PhotoClip, PhotoSubject, TrueTiming};
use rand::seq::SliceRandom;
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
    /// `tiny`'s clips with the realistic look (real faces, FACS actions, nuisances, noisy annotations).
    #[serde(rename = "realistic-tiny")]
    RealisticTiny,
    /// Shaped like the composite, half its size: every other subject of each part of the official list
    /// (the second, fourth, ... in subject-number order), 34 subjects and 216 clips with their names and
    /// labels (negative / positive / surprise 116 / 51 / 49, against the composite's 250 / 109 / 83), so
    /// the parts' frame rates and class imbalance are about the composite's. Realistic look.
    Realistic,
    /// The 442 clips of the official list with the realistic look.
    #[serde(rename = "realistic-composite")]
    RealisticComposite,
}

impl Preset {
    /// True for the presets with real faces, FACS actions, nuisances and noisy annotations.
    pub fn is_realistic(self) -> bool {
        matches!(
            self,
            Preset::RealisticTiny | Preset::Realistic | Preset::RealisticComposite
        )
    }
}

impl FromStr for Preset {
    type Err = WorkerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Preset::Tiny),
            "mini" => Ok(Preset::Mini),
            "composite" => Ok(Preset::Composite),
            "realistic-tiny" => Ok(Preset::RealisticTiny),
            "realistic" => Ok(Preset::Realistic),
            "realistic-composite" => Ok(Preset::RealisticComposite),
            _ => Err(WorkerError::InvalidOption {
                option: "--preset".into(),
                message: format!(
                    "'{s}' is not tiny, mini, composite, realistic-tiny, realistic or realistic-composite"
                ),
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
    /// Range of each clip's action intensity, drawn per clip. Cartoon presets: a multiple of the base
    /// amplitude (7.5 % of the face half-width), drawn uniformly. Realistic presets: the peak skin
    /// displacement in pixels at the scale of a 112 px face crop, drawn log-uniformly. Real
    /// micro-expressions range from barely visible to clear.
    pub intensity: (f32, f32),
    /// Probability that a clip also carries a weaker action (30-60 % of its own) that belongs to another
    /// class, as co-occurring action units do in real clips.
    pub co_action: f64,
    /// The face photographs of the realistic presets (`None`: [`FaceBank::locate`] finds them).
    pub faces: Option<PathBuf>,
    /// Also write the newer sets' layouts, `tiny`-sized ([`NEWER_PARTS`]): CAS(ME)^3 parts A and C, 4DME
    /// and MMEW, 3 subjects each, one clip per megc3 class per subject (part C: two unlabelled clips per
    /// subject), with CAS(ME)^3 A's repeated Filename and one unlabelled clip in A, 4DME and MMEW.
    pub newer_parts: bool,
}

/// The parts [`SynthOptions::newer_parts`] adds, in the order they are drawn.
pub const NEWER_PARTS: [Dataset; 4] = [
    Dataset::Casme3a,
    Dataset::Casme3c,
    Dataset::Fourdme,
    Dataset::Mmew,
];

impl SynthOptions {
    /// The defaults of a preset: RAW_selected layout, no SMIC-E. `tiny` (the tests' set) has clear,
    /// single actions (intensity 0.85-1.15, no co-occurring action); `mini` and `composite` have faint to
    /// moderate ones (0.12-0.8, i.e. 0.4-3 px at 112 x 112) and a weaker co-occurring action of another
    /// class in 70 % of the clips, so that a model has something left to learn (the demo's small model
    /// scores UF1 about 0.8-0.87 on `mini`, not 1.0). The realistic presets draw 0.25-2.5 px (barely
    /// visible to moderate) and a co-occurring AU of another class in 15 % of the clips.
    pub fn new(preset: Preset, seed: u64) -> Self {
        let (intensity, co_action) = match preset {
            Preset::Tiny => ((0.85, 1.15), 0.0),
            Preset::Mini | Preset::Composite => ((0.12, 0.8), 0.7),
            Preset::RealisticTiny | Preset::Realistic | Preset::RealisticComposite => {
                ((0.25, 2.5), 0.15)
            }
        };
        SynthOptions {
            preset,
            seed,
            casme2_layout: Casme2Layout::RawSelected,
            smic_e: false,
            intensity,
            co_action,
            faces: None,
            newer_parts: false,
        }
    }

    /// Checks the knobs: `0 < min <= max <= 3` for the intensity (realistic presets: `<= 8` px), a
    /// probability for `co_action`.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.intensity;
        let top = if self.preset.is_realistic() { 8.0 } else { 3.0 };
        if !(lo > 0.0 && lo <= hi && hi <= top) {
            return Err(WorkerError::InvalidOption {
                option: "--intensity".into(),
                message: format!("{lo},{hi}: expected MIN,MAX with 0 < MIN <= MAX <= {top}"),
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
    /// CAS(ME)^3 part A root when written (`--casme3a`; [`SynthOptions::newer_parts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casme3a: Option<PathBuf>,
    /// CAS(ME)^3 part C root when written (`--casme3c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casme3c: Option<PathBuf>,
    /// 4DME root when written (`--fourdme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fourdme: Option<PathBuf>,
    /// MMEW root when written (`--mmew`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmew: Option<PathBuf>,
    /// Number of clips per dataset key.
    pub clips: std::collections::BTreeMap<String, usize>,
    /// Number of subjects per dataset key.
    pub subjects: std::collections::BTreeMap<String, usize>,
    /// Number of frame files written.
    pub frames_written: usize,
    /// The face photographs used (realistic presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<PathBuf>,
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
    /// What the realistic presets drew (`None` for the cartoon ones): the FACS actions, the true timing
    /// the annotation is noisy about, the nuisances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realistic: Option<RealisticTruth>,
}

/// The ground truth of a realistic clip beyond its annotation. `ClipTruth::action` is then only the
/// class's bookkeeping (objective class, emotion word); the motion is `actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealisticTruth {
    /// The FACS string written to the workbook (`"4+7"`, `"R12"`), co-occurring AUs included.
    pub aus: String,
    /// Every AU drawn, with its peak displacement in pixels at a 112 px face crop.
    pub actions: Vec<(AuAction, f32)>,
    /// The true timing (the workbook's onset, apex and offset are this plus annotator noise; SMIC has no
    /// apex annotation, its reader estimates the middle frame).
    pub timing: TrueTiming,
    /// Annotated apex minus true apex, frames (SMIC: the middle frame minus the true apex).
    pub apex_error: f32,
    /// Annotated onset and offset minus true ones, frames.
    pub onset_error: f32,
    /// Offset's error.
    pub offset_error: f32,
    /// Relative strength of the co-occurring AU of another class (the last of `actions`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_occurring: Option<f32>,
    /// The label-free nuisances.
    pub nuisances: Nuisances,
    /// Index of the LFW face in the face file, and its side in pixels in the frame.
    pub face: (usize, f32),
}

/// Everything needed to render one clip.
#[derive(Debug, Clone)]
struct ClipPlan {
    truth: ClipTruth,
    face_idx: usize,
    fps: u32,
    first: u32,
    last: u32,
    look: Look,
    seed: u64,
    dir: PathBuf,
    name: FrameName,
    color: bool,
}

/// What a clip's truth holds beyond its layout's names and annotated onset and offset.
struct Annotation {
    megc3: Option<usize>,
    emotion: String,
    action: Action,
    apex: u32,
    intensity: f32,
    co_action: Option<(Action, f32)>,
    realistic: Option<RealisticTruth>,
}

impl ClipPlan {
    /// The plan of a clip of dataset `d` written in layout `l`, drawn with `look` from `seed`.
    fn in_layout(
        d: Dataset,
        l: Layout,
        a: Annotation,
        face_idx: usize,
        look: Look,
        seed: u64,
    ) -> Self {
        ClipPlan {
            truth: ClipTruth {
                dataset: d,
                subject: l.subject,
                filename: l.filename,
                megc3: a.megc3,
                emotion: a.emotion,
                action: a.action,
                onset: l.onset,
                apex: a.apex,
                offset: l.offset,
                intensity: a.intensity,
                co_action: a.co_action,
                realistic: a.realistic,
            },
            face_idx,
            fps: d.fps(),
            first: l.first,
            last: l.last,
            look,
            seed,
            dir: l.dir,
            name: l.name,
            color: l.color,
        }
    }
}

/// How a clip is drawn.
#[derive(Debug, Clone)]
enum Look {
    Cartoon(CartoonClip),
    Photo(PhotoClip),
}

/// The subjects' appearances, one kind per preset.
enum Subjects {
    Cartoon(Vec<Face>),
    Photo(Vec<PhotoSubject>),
}

impl Subjects {
    /// Frame `t` of a clip, with its width, height and how it is written.
    fn frame(
        &self,
        p: &ClipPlan,
        t: u32,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize, usize, FrameStyle)> {
        match (self, &p.look) {
            (Subjects::Cartoon(faces), Look::Cartoon(c)) => {
                let f = &faces[p.face_idx];
                let img = cartoon::render(f, &p.truth, p.fps, c, t, rng);
                let tint = p.color.then_some(CARTOON_TINT);
                Ok((
                    img,
                    f.w,
                    f.h,
                    FrameStyle {
                        tint,
                        jpeg_quality: 95,
                    },
                ))
            }
            (Subjects::Photo(subjects), Look::Photo(c)) => {
                let s = &subjects[p.face_idx];
                let img = photo::render(s, c, p.fps, t, rng)?;
                let style = FrameStyle {
                    tint: p.color.then_some(s.tint),
                    jpeg_quality: c.nuisances.jpeg_quality.unwrap_or(95),
                };
                Ok((img, photo::FRAME_W, photo::FRAME_H, style))
            }
            _ => Err(WorkerError::Synth(
                "a clip planned with another preset's look".into(),
            )),
        }
    }
}

/// A warm skin tint (BGR) of the cartoon presets; reading it back as grey gives about the drawn level.
const CARTOON_TINT: [f32; 3] = [0.82, 0.97, 1.08];

/// How a frame is written: colour tint (BGR multipliers; `None` for grey) and JPEG quality.
struct FrameStyle {
    tint: Option<[f32; 3]>,
    jpeg_quality: i32,
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

fn write_frame(path: &Path, img: &[f32], w: usize, h: usize, style: &FrameStyle) -> Result<()> {
    use opencv::core::{Mat, Vector};
    use opencv::prelude::*;
    let cv = |e| WorkerError::cv(format!("writing {}", path.display()), e);
    let color = style.tint.is_some();
    let bytes: Vec<u8> = if let Some(t) = style.tint {
        img.iter()
            .flat_map(|&v| {
                [
                    (v * t[0]).round().min(255.0) as u8,
                    (v * t[1]).round().min(255.0) as u8,
                    (v * t[2]).round().min(255.0) as u8,
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
    let params =
        Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, style.jpeg_quality]);
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
    write_xlsx_sheet(path, None, rows)
}

/// Writes rows to the only sheet of an xlsx workbook, named `sheet` (else the writer's default name).
pub fn write_xlsx_sheet(path: &Path, sheet: Option<&str>, rows: &[Vec<Cell>]) -> Result<()> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let e = |e: rust_xlsxwriter::XlsxError| WorkerError::Synth(format!("{}: {e}", path.display()));
    if let Some(name) = sheet {
        ws.set_name(name).map_err(e)?;
    }
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
    mer_shared::fs::write_atomic(path, &bytes)?;
    Ok(())
}

struct Sizes {
    w: usize,
    h: usize,
    /// Clip length range in ms.
    ms: (f32, f32),
}

/// Frame size and clip lengths of a cartoon preset.
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
        // The realistic presets' lengths are per dataset ([`realistic_ms`]); the frame is photo's.
        Preset::RealisticTiny | Preset::Realistic | Preset::RealisticComposite => Sizes {
            w: photo::FRAME_W,
            h: photo::FRAME_H,
            ms: (90.0, 180.0),
        },
    }
}

/// Clip lengths of the realistic presets, ms: onset to offset of real MEs runs 150-500 ms (CASME II's
/// and SAMM's 200 fps give 30-90 frames, SMIC-HS's 100 fps 18-45); `realistic-tiny` keeps them short.
fn realistic_ms(p: Preset, d: Dataset) -> (f32, f32) {
    match (p, d) {
        (_, d) if NEWER_PARTS.contains(&d) => NEWER_MS,
        (Preset::RealisticTiny, _) => (100.0, 200.0),
        (_, Dataset::Smic) => (180.0, 450.0),
        _ => (150.0, 450.0),
    }
}

/// The clips of [`SynthOptions::newer_parts`], `tiny`-sized: 3 subjects per part, one clip per megc3
/// class each; one unlabelled clip in CAS(ME)^3 A, 4DME and MMEW; CAS(ME)^3 C's clips carry no emotion.
fn newer_entries() -> Vec<Entry> {
    let mut v = Vec::new();
    for d in NEWER_PARTS {
        for s in 1..=3u32 {
            if d == Dataset::Casme3c {
                v.extend([(d, s, None, None), (d, s, None, None)]);
            } else {
                v.extend((0..3).map(|l| (d, s, Some(l), None)));
            }
        }
        if d != Dataset::Casme3c {
            v.push((d, 2, None, None));
        }
    }
    v
}

/// Every clip the options ask for: the preset's, then the newer parts' (appended, so that a seed draws
/// the same preset clips with and without them).
fn all_entries(opts: &SynthOptions) -> Vec<Entry> {
    let mut v = entries(opts.preset);
    if opts.newer_parts {
        v.extend(newer_entries());
    }
    v
}

/// Clip lengths of the newer parts, ms: at their 30-90 fps, 6-40 frames.
const NEWER_MS: (f32, f32) = (200.0, 450.0);

/// (dataset, subject number, clip label or None for others, clip name override)
type Entry = (Dataset, u32, Option<usize>, Option<String>);

fn subject_number(s: &str) -> u32 {
    s.trim_start_matches("sub")
        .trim_start_matches('s')
        .parse()
        .unwrap_or(0)
}

fn entries(preset: Preset) -> Vec<Entry> {
    let mut v = Vec::new();
    match preset {
        Preset::Tiny | Preset::RealisticTiny => {
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
        Preset::Composite | Preset::RealisticComposite => {
            for e in composite_list() {
                let n = subject_number(&e.subject);
                v.push((e.dataset, n, Some(e.label), Some(e.filename)));
            }
        }
        Preset::Realistic => {
            // Every other subject of each part, in subject-number order, starting with the second.
            let list = composite_list();
            for d in Dataset::COMPOSITE {
                let mut subs: Vec<u32> = list
                    .iter()
                    .filter(|e| e.dataset == d)
                    .map(|e| subject_number(&e.subject))
                    .collect();
                subs.sort_unstable();
                subs.dedup();
                let kept: std::collections::BTreeSet<u32> =
                    subs.into_iter().skip(1).step_by(2).collect();
                for e in list.iter().filter(|e| e.dataset == d) {
                    let n = subject_number(&e.subject);
                    if kept.contains(&n) {
                        v.push((e.dataset, n, Some(e.label), Some(e.filename.clone())));
                    }
                }
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
        (Dataset::Casme3a, Action::LipCornerPull) => "happy".into(),
        (Dataset::Casme3a, Action::BrowRaise) => "surprise".into(),
        (Dataset::Casme3a, Action::BrowLower) => pick(rng, &["anger", "fear"]),
        (Dataset::Casme3a, Action::NoseWrinkle) => "disgust".into(),
        (Dataset::Casme3a, Action::LipCornerDepress) => "sad".into(),
        (Dataset::Casme3a, Action::ChinRaise) => "others".into(),
        // Part C has no emotion column.
        (Dataset::Casme3c, _) => String::new(),
        (Dataset::Fourdme, Action::LipCornerPull) => "Positive".into(),
        (Dataset::Fourdme, Action::BrowRaise) => "Surprise".into(),
        (Dataset::Fourdme, Action::ChinRaise) => pick(rng, &["Repression", "Others"]),
        (Dataset::Fourdme, _) => "Negative".into(),
        (Dataset::Mmew, Action::LipCornerPull) => "happiness".into(),
        (Dataset::Mmew, Action::BrowRaise) => "surprise".into(),
        (Dataset::Mmew, Action::BrowLower) => pick(rng, &["anger", "fear"]),
        (Dataset::Mmew, Action::NoseWrinkle) => "disgust".into(),
        (Dataset::Mmew, Action::LipCornerDepress) => "sadness".into(),
        (Dataset::Mmew, Action::ChinRaise) => "others".into(),
    }
}

/// The class bookkeeping of a realistic clip (objective class, emotion word) from its label and AUs.
fn bookkeeping_action(label: Option<usize>, aus: &[AuAction]) -> Action {
    match label {
        Some(1) => Action::LipCornerPull,
        Some(2) => Action::BrowRaise,
        None => Action::ChinRaise,
        Some(_) => match aus.first().map(|a| a.au) {
            Some(Au::Au4) | Some(Au::Au7) => Action::BrowLower,
            Some(Au::Au9) | Some(Au::Au10) => Action::NoseWrinkle,
            _ => Action::LipCornerDepress,
        },
    }
}

/// Generates a preset with its default options into `out_dir`.
pub fn generate(preset: Preset, seed: u64, out_dir: &Path) -> Result<SynthSummary> {
    generate_with(&SynthOptions::new(preset, seed), out_dir)
}

/// The dataset roots under the output folder.
struct Roots {
    casme2: PathBuf,
    samm: PathBuf,
    smic: PathBuf,
    smic_e: PathBuf,
    casme3a: PathBuf,
    casme3c: PathBuf,
    fourdme: PathBuf,
    mmew: PathBuf,
}

impl Roots {
    /// The roots under `out`, each dataset in its own folder.
    fn under(out: &Path) -> Self {
        Roots {
            casme2: out.join("casme2"),
            samm: out.join("samm"),
            smic: out.join("smic"),
            smic_e: out.join("smic-e"),
            casme3a: out.join("casme3a"),
            casme3c: out.join("casme3c"),
            fourdme: out.join("4dme"),
            mmew: out.join("mmew"),
        }
    }

    /// The roots a run with `opts` writes.
    fn written(&self, opts: &SynthOptions) -> Vec<&PathBuf> {
        let mut v = vec![&self.casme2, &self.samm, &self.smic];
        if opts.smic_e {
            v.push(&self.smic_e);
        }
        if opts.newer_parts {
            v.extend([&self.casme3a, &self.casme3c, &self.fourdme, &self.mmew]);
        }
        v
    }
}

/// Where one clip's frames go and how they are named; the annotated onset and offset.
struct Layout {
    subject: String,
    filename: String,
    dir: PathBuf,
    name: FrameName,
    first: u32,
    last: u32,
    color: bool,
    onset: u32,
    offset: u32,
}

/// One clip to place: what [`Namer::layout`] needs to name it and its frames.
struct Slot<'a> {
    /// The clip's index among all entries.
    i: usize,
    /// The clip's number within its subject (1, 2, ...).
    k: u32,
    /// Its dataset.
    d: Dataset,
    /// Its subject number.
    subj: u32,
    /// Its megc3 label, if any.
    label: Option<usize>,
    /// Its name from the official list, if any.
    name: Option<String>,
    /// The annotated emotion.
    emotion: &'a str,
    /// The first frame's number before the layout's offsets.
    onset: u32,
    /// Frames in the clip.
    nframes: u32,
}

/// Names clips and frames in each dataset's real layout (the counters make names unique).
struct Namer<'a> {
    roots: &'a Roots,
    casme2_layout: Casme2Layout,
    per_subject: std::collections::BTreeMap<(Dataset, u32), u32>,
    smic_class: std::collections::BTreeMap<(u32, usize), u32>,
    frame_base: u32,
    /// The last frame written of CAS(ME)^3 A recording `spNO.1/a`, which holds two clips.
    shared_recording_end: Option<u32>,
}

impl Namer<'_> {
    /// The number of this clip within its subject (1, 2, ...).
    fn next_of_subject(&mut self, d: Dataset, subj: u32) -> u32 {
        let c = self.per_subject.entry((d, subj)).or_insert(0);
        *c += 1;
        *c
    }

    /// The layout of clip `s` (see [`Slot`]) in its dataset's real layout.
    fn layout(&mut self, s: Slot) -> Layout {
        match s.d {
            Dataset::Casme2 => self.layout_casme2(s),
            Dataset::Samm => self.layout_samm(s),
            Dataset::Smic => self.layout_smic(s),
            Dataset::Casme3a => self.layout_casme3a(s),
            Dataset::Casme3c => self.layout_casme3c(s),
            Dataset::Fourdme => self.layout_fourdme(s),
            Dataset::Mmew => self.layout_mmew(s),
        }
    }

    /// CASME II: `CASME2_RAW_selected/subNN/<clip>/imgN.jpg` or `Cropped/.../reg_imgN.jpg`.
    fn layout_casme2(&self, s: Slot) -> Layout {
        let Slot {
            subj,
            name,
            k,
            i,
            onset,
            nframes,
            ..
        } = s;
        let offset = onset + nframes - 1;
        let subject = format!("sub{subj:02}");
        let filename = name.unwrap_or_else(|| {
            format!(
                "EP{:02}_{:02}{}",
                2 + k,
                i % 7 + 1,
                if k.is_multiple_of(2) { "f" } else { "" }
            )
        });
        let (folder, prefix) = match self.casme2_layout {
            Casme2Layout::RawSelected => ("CASME2_RAW_selected", "img"),
            Casme2Layout::Cropped => ("Cropped", "reg_img"),
        };
        let dir = self
            .roots
            .casme2
            .join(folder)
            .join(&subject)
            .join(&filename);
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Prefix(prefix.into(), "jpg".into()),
            first: onset,
            last: offset,
            color: true,
            onset,
            offset,
        }
    }

    /// SAMM: `SAMM/NNN/<clip>/NNN_<frame>.jpg`, 4- or 5-digit padding, 3 spare frames on each side.
    fn layout_samm(&self, s: Slot) -> Layout {
        let Slot {
            subj,
            name,
            k,
            i,
            onset,
            nframes,
            ..
        } = s;
        let subject = format!("{subj}");
        let filename = name.unwrap_or_else(|| format!("{subj:03}_{}_{}", 1 + k % 3, k));
        let dir = self
            .roots
            .samm
            .join("SAMM")
            .join(format!("{subj:03}"))
            .join(&filename);
        // Mixed padding between clips: 4 or 5 digits. The folder also holds 3 frames before the
        // onset and after the offset (the annotation, not the folder, delimits the ME).
        let width = if i.is_multiple_of(2) { 4 } else { 5 };
        let on = 1000 + onset;
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Padded(format!("{subj:03}_"), width, "jpg".into()),
            first: on - 3,
            last: on + nframes + 2,
            color: false,
            onset: on,
            offset: on + nframes - 1,
        }
    }

    /// SMIC-HS: `HS/sN/micro/<class>/<clip>/reg_imageNNNNNN.bmp`.
    fn layout_smic(&mut self, s: Slot) -> Layout {
        let Slot {
            subj,
            label,
            name,
            nframes,
            ..
        } = s;
        let subject = format!("s{subj:02}");
        let lab = label.unwrap_or(0);
        let abbr = ["ne", "po", "sur"][lab];
        let filename = match name {
            Some(n) => n,
            None => {
                let c = self.smic_class.entry((subj, lab)).or_insert(0);
                *c += 1;
                format!("s{subj:02}_{abbr}_{:02}", *c)
            }
        };
        let folder = crate::prep::datasets::smic::canonical_clip(&filename).replacen(
            &format!("s{subj:02}"),
            &format!("s{subj}"),
            1,
        );
        let class = crate::prep::datasets::smic::CLASSES[lab];
        let dir = self
            .roots
            .smic
            .join("HS")
            .join(format!("s{subj}"))
            .join("micro")
            .join(class)
            .join(folder);
        self.frame_base += 1000;
        let on = 100000 + self.frame_base * 7;
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Padded("reg_image".into(), 6, "bmp".into()),
            first: on,
            last: on + nframes - 1,
            color: true,
            onset: on,
            offset: on + nframes - 1,
        }
    }

    /// CAS(ME)^3 part A: `spNO.N/<recording>/color/N.jpg`, two clips sharing subject 1's recording `a`.
    fn layout_casme3a(&mut self, s: Slot) -> Layout {
        let Slot {
            subj,
            k,
            onset,
            nframes,
            ..
        } = s;
        // A Filename names a recording. Subject 1's first two clips come from one recording, `a`,
        // as in the release, so the reader names them `a_<onset>`; the second starts after the
        // first's frames. The folder holds 2 frames of the recording on each side of a clip.
        let subject = format!("spNO.{subj}");
        let shared = subj == 1 && k <= 2;
        let letter = if subj == 1 {
            k.saturating_sub(2)
        } else {
            k - 1
        };
        let recording = char::from(b'a' + (letter % 26) as u8).to_string();
        let onset = match (shared, self.shared_recording_end) {
            (true, Some(end)) => end + 8 + onset % 7,
            _ => onset,
        };
        let offset = onset + nframes - 1;
        if shared {
            self.shared_recording_end = Some(offset + 2);
        }
        let filename = if shared {
            format!("{recording}_{onset}")
        } else {
            recording.clone()
        };
        let dir = self
            .roots
            .casme3a
            .join(&subject)
            .join(&recording)
            .join("color");
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Prefix(String::new(), "jpg".into()),
            first: onset - 2,
            last: offset + 2,
            color: true,
            onset,
            offset,
        }
    }

    /// CAS(ME)^3 part C: `ME_C/NN/<count>/color/N.jpg`.
    fn layout_casme3c(&self, s: Slot) -> Layout {
        let Slot {
            subj,
            k,
            onset,
            nframes,
            ..
        } = s;
        let offset = onset + nframes - 1;
        let subject = format!("{subj:02}");
        let filename = k.to_string();
        let dir = self
            .roots
            .casme3c
            .join("ME_C")
            .join(&subject)
            .join(&filename)
            .join("color");
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Prefix(String::new(), "jpg".into()),
            first: onset,
            last: offset,
            color: true,
            onset,
            offset,
        }
    }

    /// 4DME: `<FRAME_DIR>/SNN/SNN_KK/imgNNNNN.jpg`.
    fn layout_fourdme(&self, s: Slot) -> Layout {
        let Slot {
            subj,
            k,
            onset,
            nframes,
            ..
        } = s;
        let offset = onset + nframes - 1;
        let subject = format!("S{subj:02}");
        let filename = format!("{subject}_{k:02}");
        let dir = self
            .roots
            .fourdme
            .join(crate::prep::datasets::fourdme::FRAME_DIR)
            .join(&subject)
            .join(&filename);
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Padded("img".into(), 5, "jpg".into()),
            first: onset,
            last: offset,
            color: false,
            onset,
            offset,
        }
    }

    /// MMEW: `<FRAME_DIR>/<emotion>/<clip>/N.jpg`.
    fn layout_mmew(&self, s: Slot) -> Layout {
        let Slot {
            subj,
            i,
            k,
            emotion,
            onset,
            nframes,
            ..
        } = s;
        let offset = onset + nframes - 1;
        let subject = format!("S{subj:02}");
        let filename = format!("{subject}_{:02}{k:02}", i % 5 + 1);
        let dir = self
            .roots
            .mmew
            .join(crate::prep::datasets::mmew::FRAME_DIR)
            .join(emotion)
            .join(&filename);
        Layout {
            subject,
            filename,
            dir,
            name: FrameName::Prefix(String::new(), "jpg".into()),
            first: onset,
            last: offset,
            color: true,
            onset,
            offset,
        }
    }
}

/// Generates a synthetic dataset with explicit options.
pub fn generate_with(opts: &SynthOptions, out_dir: &Path) -> Result<SynthSummary> {
    opts.validate()?;
    let roots = Roots::under(out_dir);
    for d in roots.written(opts) {
        if d.exists() {
            return Err(WorkerError::InvalidOption {
                option: "--out".into(),
                message: format!("{} already exists; use an empty folder", d.display()),
            });
        }
    }
    let mut namer = Namer {
        roots: &roots,
        casme2_layout: opts.casme2_layout,
        per_subject: Default::default(),
        smic_class: Default::default(),
        frame_base: 1000,
        shared_recording_end: None,
    };
    let (plans, subjects, faces_file) = if opts.preset.is_realistic() {
        let path = FaceBank::locate(opts.faces.as_deref())?;
        let bank = FaceBank::load(&path)?;
        let (plans, subjects) = plan_realistic(opts, &bank, &mut namer)?;
        (plans, subjects, Some(path))
    } else {
        let (plans, subjects) = plan_cartoon(opts, &mut namer);
        (plans, subjects, None)
    };
    // Render and write every clip in parallel.
    let written: Vec<usize> = plans
        .par_iter()
        .map(|p| -> Result<usize> {
            std::fs::create_dir_all(&p.dir).map_err(|e| WorkerError::io(&p.dir, e))?;
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
            for t in p.first..=p.last {
                let (img, w, h, style) = subjects.frame(p, t, &mut rng)?;
                write_frame(&p.dir.join(p.name.file(t)), &img, w, h, &style)?;
            }
            Ok((p.last - p.first + 1) as usize)
        })
        .collect::<Result<Vec<_>>>()?;
    // Annotation workbooks.
    write_casme2_workbooks(&roots.casme2, &plans)?;
    write_samm_workbook(&roots.samm, &plans)?;
    if opts.newer_parts {
        newer::write_workbooks(&roots, &plans)?;
    }
    let mut frames_written: usize = written.iter().sum();
    let smic_e = if opts.smic_e {
        frames_written += write_smic_e(&roots.smic_e, &plans, &subjects)?;
        Some(roots.smic_e.clone())
    } else {
        None
    };
    let mut clips = std::collections::BTreeMap::new();
    let mut subject_sets: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for p in &plans {
        *clips.entry(p.truth.dataset.key().to_string()).or_insert(0) += 1;
        subject_sets
            .entry(p.truth.dataset.key().to_string())
            .or_default()
            .insert(p.truth.subject.clone());
    }
    let summary = SynthSummary {
        preset: opts.preset,
        seed: opts.seed,
        intensity: opts.intensity,
        co_action: opts.co_action,
        casme2: roots.casme2,
        samm: roots.samm,
        smic: roots.smic,
        smic_e,
        casme3a: opts.newer_parts.then(|| roots.casme3a.clone()),
        casme3c: opts.newer_parts.then(|| roots.casme3c.clone()),
        fourdme: opts.newer_parts.then(|| roots.fourdme.clone()),
        mmew: opts.newer_parts.then(|| roots.mmew.clone()),
        clips,
        subjects: subject_sets
            .into_iter()
            .map(|(k, v)| (k, v.len()))
            .collect(),
        frames_written,
        faces: faces_file,
        truth: plans.into_iter().map(|p| p.truth).collect(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| WorkerError::Synth(e.to_string()))?;
    mer_shared::fs::write_atomic(&out_dir.join("synth.json"), &json)?;
    Ok(summary)
}

/// Plans the clips of a cartoon preset. The order of the random draws is the one these presets always
/// had, so a seed gives the same clips as before the realistic presets existed.
fn plan_cartoon(opts: &SynthOptions, namer: &mut Namer) -> (Vec<ClipPlan>, Subjects) {
    let sz = sizes(opts.preset);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut faces: Vec<Face> = Vec::new();
    let mut face_of: std::collections::BTreeMap<(Dataset, u32), usize> = Default::default();
    let mut plans: Vec<ClipPlan> = Vec::new();
    for (i, (d, subj, label, name)) in all_entries(opts).into_iter().enumerate() {
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
        let k = namer.next_of_subject(d, subj);
        let fps = d.fps();
        let ms = if NEWER_PARTS.contains(&d) {
            NEWER_MS
        } else {
            sz.ms
        };
        let dur_ms = rng.random_range(ms.0..ms.1);
        let nframes = ((dur_ms / 1000.0 * fps as f32).round() as u32).max(6);
        let onset = match d {
            Dataset::Smic => 0,
            _ => rng.random_range(20..400),
        };
        let l = namer.layout(Slot {
            i,
            k,
            d,
            subj,
            label,
            name,
            emotion: &emotion,
            onset,
            nframes,
        });
        // The apex: 30-60 % into the clip; SMIC's and CAS(ME)^3 C's is the middle frame (what their
        // readers estimate it to be).
        let apex = match d {
            Dataset::Smic | Dataset::Casme3c => l.onset + (l.offset - l.onset) / 2,
            _ => {
                l.onset + ((l.offset - l.onset) as f32 * rng.random_range(0.3..0.6)).round() as u32
            }
        };
        let blink = if rng.random_bool(0.35) {
            let c = rng.random_range(l.first as f32..=l.last as f32);
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
        let look = Look::Cartoon(CartoonClip {
            amplitude: 0.075 * face.a * strength,
            blink,
            jitter,
            drift: (
                rng.random_range(0.01..0.04),
                rng.random_range(0.0..std::f32::consts::TAU),
            ),
        });
        let annotation = Annotation {
            megc3: label,
            emotion,
            action,
            apex,
            intensity: strength,
            co_action,
            realistic: None,
        };
        plans.push(ClipPlan::in_layout(
            d,
            l,
            annotation,
            face_idx,
            look,
            rng.random(),
        ));
    }
    (plans, Subjects::Cartoon(faces))
}

/// Sensor noise (grey levels) and JPEG quality range of each dataset's realistic frames: SMIC-HS's BMP
/// frames are uncompressed but noisier (its high-speed camera), SAMM's grey JPEGs the cleanest.
fn recording(d: Dataset) -> (f32, Option<(i32, i32)>) {
    match d {
        Dataset::Casme2 => (2.0, Some((82, 92))),
        Dataset::Samm => (1.5, Some((88, 95))),
        Dataset::Smic => (3.0, None),
        Dataset::Casme3a | Dataset::Casme3c => (2.5, Some((80, 90))),
        Dataset::Fourdme | Dataset::Mmew => (2.0, Some((85, 95))),
    }
}

/// Plans the clips of a realistic preset: one real face per subject, an AU combination of the clip's
/// class, the true timing and the annotator's noisy version of it, the nuisances.
fn plan_realistic(
    opts: &SynthOptions,
    bank: &FaceBank,
    namer: &mut Namer,
) -> Result<(Vec<ClipPlan>, Subjects)> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut faces = FaceDealer::new(bank, &mut rng)?;
    let mut plans: Vec<ClipPlan> = Vec::new();
    for (i, (d, subj, label, name)) in all_entries(opts).into_iter().enumerate() {
        let face_idx = faces.face_of(d, subj, &mut rng)?;
        let size = faces.subjects[face_idx].size;
        let (aus, co_action) = draw_realistic_aus(opts, label, &mut rng);
        let action = bookkeeping_action(label, &aus);
        let emotion = emotion_for(d, action, &mut rng);
        let k = namer.next_of_subject(d, subj);
        let fps = d.fps();
        let ms = realistic_ms(opts.preset, d);
        let dur_ms = rng.random_range(ms.0..ms.1);
        let nframes = ((dur_ms / 1000.0 * fps as f32).round() as u32).max(8);
        let onset = match d {
            Dataset::Smic => 0,
            _ => rng.random_range(20..400),
        };
        let l = namer.layout(Slot {
            i,
            k,
            d,
            subj,
            label,
            name,
            emotion: &emotion,
            onset,
            nframes,
        });
        let (apex, timing, t_off) = realistic_timing(d, &l, fps, &mut rng);
        let (t_on, t_ap) = (timing.onset, timing.apex);
        // Peak displacement at a 112 px crop, log-uniform; in this subject's pixels for the renderer.
        let (lo, hi) = opts.intensity;
        let at112 = if hi > lo {
            (lo.ln() + rng.random_range(0.0..1.0f32) * (hi.ln() - lo.ln())).exp()
        } else {
            lo
        };
        let actions: Vec<(AuAction, f32)> = aus.iter().map(|&a| (a, at112)).collect();
        let (sigma, jpeg) = recording(d);
        let nuisances = PhotoClip::draw_nuisances(l.first, l.last, fps, sigma, jpeg, &mut rng);
        let realistic = RealisticTruth {
            aus: facs::au_string(&aus),
            actions: actions.clone(),
            timing,
            apex_error: apex as f32 - t_ap,
            onset_error: l.onset as f32 - t_on,
            offset_error: l.offset as f32 - t_off,
            co_occurring: co_action,
            nuisances: nuisances.clone(),
            face: (faces.subjects[face_idx].face_index, size),
        };
        let look = Look::Photo(PhotoClip {
            actions: actions
                .iter()
                .map(|&(a, px)| (a, px * size / 112.0))
                .collect(),
            timing,
            nuisances,
            frames: (l.first, l.last),
        });
        let annotation = Annotation {
            megc3: label,
            emotion,
            action,
            apex,
            intensity: at112,
            co_action: None,
            realistic: Some(realistic),
        };
        plans.push(ClipPlan::in_layout(
            d,
            l,
            annotation,
            face_idx,
            look,
            rng.random(),
        ));
    }
    Ok((plans, Subjects::Photo(faces.subjects)))
}

/// Deals the face photographs of a realistic preset to its subjects: the bank's faces in a shuffled
/// order, each new subject getting the next one that the Haar detector finds (never shared).
struct FaceDealer<'a> {
    /// The face photographs.
    bank: &'a FaceBank,
    /// The bank's indices in the order they are dealt.
    order: Vec<usize>,
    /// Position in `order` of the next face to try.
    next: usize,
    /// The detector a face must be found by.
    detector: crate::prep::face::FaceDetector,
    /// The subjects dealt so far.
    subjects: Vec<PhotoSubject>,
    /// Each (dataset, subject number)'s index in `subjects`.
    subject_of: std::collections::BTreeMap<(Dataset, u32), usize>,
}

impl<'a> FaceDealer<'a> {
    /// Shuffles the bank's faces with `rng`.
    fn new(bank: &'a FaceBank, rng: &mut ChaCha8Rng) -> Result<Self> {
        let mut order: Vec<usize> = (0..bank.len()).collect();
        order.shuffle(rng);
        let detector = crate::prep::face::FaceDetector::new()?;
        Ok(FaceDealer {
            bank,
            order,
            next: 0,
            detector,
            subjects: Vec::new(),
            subject_of: Default::default(),
        })
    }

    /// The index in `subjects` of subject `subj` of `d`, dealing it a face when it is new.
    fn face_of(&mut self, d: Dataset, subj: u32, rng: &mut ChaCha8Rng) -> Result<usize> {
        if let Some(&f) = self.subject_of.get(&(d, subj)) {
            return Ok(f);
        }
        // The next face of the shuffled bank that the Haar detector finds (faces are never
        // shared between subjects).
        let subject = loop {
            let Some(&lfw) = self.order.get(self.next) else {
                return Err(WorkerError::Synth(format!(
                    "{}: fewer detectable faces than the preset's {} subjects",
                    self.bank.path.display(),
                    self.subject_of.len() + 1
                )));
            };
            self.next += 1;
            let s = PhotoSubject::new(self.bank, lfw, rng)?;
            if s.detectable(&mut self.detector, rng)? {
                break s;
            }
        };
        self.subjects.push(subject);
        self.subject_of.insert((d, subj), self.subjects.len() - 1);
        Ok(self.subjects.len() - 1)
    }
}

/// A realistic clip's AUs for its `label`, and with probability `opts.co_action` a weaker AU of another
/// class (as co-occurring AUs of real clips) and its relative strength.
fn draw_realistic_aus(
    opts: &SynthOptions,
    label: Option<usize>,
    rng: &mut ChaCha8Rng,
) -> (Vec<AuAction>, Option<f32>) {
    let mut aus = facs::draw(label, rng);
    // A weaker AU of another class, as co-occurring AUs of real clips.
    let co_action = if opts.co_action > 0.0 && rng.random_bool(opts.co_action) {
        let other = match label {
            Some(c) => Some((c + rng.random_range(1..3usize)) % 3),
            None => Some(rng.random_range(0..3usize)),
        };
        let k = rng.random_range(0.3f32..0.6);
        let mut co = facs::draw(other, rng);
        co.truncate(1);
        for a in co.iter_mut() {
            a.strength *= k;
        }
        aus.extend(co);
        Some(k)
    } else {
        None
    };
    (aus, co_action)
}

/// A whole-frame jitter of normal spread `sigma` (0 when `sigma` is not a valid spread).
fn annotation_jitter(rng: &mut ChaCha8Rng, sigma: f32) -> f32 {
    Normal::new(0.0f32, sigma)
        .map(|n| n.sample(rng))
        .unwrap_or(0.0)
        .round()
}

/// The annotated apex of a realistic clip laid out as `l`, the true timing the annotation is off from,
/// and the true offset as drawn (before the timing keeps it after the apex).
fn realistic_timing(
    d: Dataset,
    l: &Layout,
    fps: u32,
    rng: &mut ChaCha8Rng,
) -> (u32, TrueTiming, f32) {
    let len = (l.offset - l.onset) as f32;
    // The annotated apex (SMIC, CAS(ME)^3 C: none; their readers take the middle frame).
    let apex = match d {
        Dataset::Smic | Dataset::Casme3c => l.onset + (l.offset - l.onset) / 2,
        _ => l.onset + (len * rng.random_range(0.3..0.6)).round() as u32,
    };
    // The truth the annotation is off from: onset/offset by about 10 ms, the apex by 7 % of the clip
    // (at least 1.5 frames); SMIC's true apex anywhere in 30-70 % of the clip.
    let edge = 0.01 * fps as f32;
    let t_on = l.onset as f32 + annotation_jitter(rng, edge);
    let t_off = l.offset as f32 + annotation_jitter(rng, edge);
    let t_ap = match d {
        Dataset::Smic | Dataset::Casme3c => {
            (l.onset as f32 + len * rng.random_range(0.3..0.7)).round()
        }
        _ => apex as f32 + annotation_jitter(rng, (0.07 * len).max(1.5)),
    }
    .clamp(t_on + 1.0, (t_off - 1.0).max(t_on + 1.0));
    let timing = TrueTiming {
        onset: t_on,
        apex: t_ap,
        offset: t_off.max(t_ap + 1.0),
        rise: rng.random_range(0.6..1.6),
        residual: rng.random_range(0.0..0.35),
    };
    (apex, timing, t_off)
}

/// The AU column of a clip's workbook row.
fn workbook_aus(t: &ClipTruth) -> String {
    match &t.realistic {
        Some(r) => r.aus.clone(),
        None => t.action.aus().to_string(),
    }
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
            s(workbook_aus(t)),
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
            s(workbook_aus(t)),
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
fn write_smic_e(root: &Path, plans: &[ClipPlan], subjects: &Subjects) -> Result<usize> {
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
            for f in p.first - 4..=p.last + 4 {
                let (img, w, h, style) = subjects.frame(p, f, &mut rng)?;
                write_frame(&dir.join(format!("image{f}.jpg")), &img, w, h, &style)?;
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

impl SynthSummary {
    /// Options for the roots of a synthetic dataset: the composite's three parts, and the newer parts when
    /// they were written (SMIC-E, another reading of the SMIC clips, is the caller's choice).
    pub fn prep_options(&self, out: impl Into<PathBuf>) -> PrepOptions {
        let s = self;
        PrepOptions {
            casme2: Some(s.casme2.clone()),
            samm: Some(s.samm.clone()),
            smic: Some(s.smic.clone()),
            casme3a: s.casme3a.clone(),
            casme3c: s.casme3c.clone(),
            fourdme: s.fourdme.clone(),
            mmew: s.mmew.clone(),
            out: out.into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cartoon::intensity;
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
    fn the_realistic_preset_is_shaped_like_the_composite() {
        let r = entries(Preset::Realistic);
        assert_eq!(r.len(), 216);
        let subjects: std::collections::BTreeSet<(Dataset, u32)> =
            r.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(subjects.len(), 34);
        let count = |d: Dataset, l: usize| r.iter().filter(|e| e.0 == d && e.2 == Some(l)).count();
        assert_eq!([0, 1, 2].map(|l| count(Dataset::Smic, l)), [31, 19, 31]);
        assert_eq!([0, 1, 2].map(|l| count(Dataset::Casme2, l)), [52, 14, 8]);
        assert_eq!([0, 1, 2].map(|l| count(Dataset::Samm, l)), [33, 18, 10]);
        // Every name is the official list's, and the tiny and composite variants mirror the cartoon ones.
        let official: std::collections::BTreeSet<String> = entries(Preset::Composite)
            .into_iter()
            .filter_map(|e| e.3)
            .collect();
        assert!(r
            .iter()
            .all(|e| e.3.as_ref().is_some_and(|n| official.contains(n))));
        assert_eq!(
            entries(Preset::RealisticComposite),
            entries(Preset::Composite)
        );
        assert_eq!(entries(Preset::RealisticTiny), entries(Preset::Tiny));
        assert_eq!(
            "realistic-tiny".parse::<Preset>().unwrap(),
            Preset::RealisticTiny
        );
        assert!("realistic-mini".parse::<Preset>().is_err());
    }

    #[test]
    fn presets_have_the_promised_sizes() {
        let tiny = entries(Preset::Tiny);
        assert_eq!(tiny.len(), 28);
        let comp = entries(Preset::Composite);
        assert_eq!(comp.len(), 442);
        let mini = entries(Preset::Mini);
        assert_eq!(mini.len(), 48);
        for d in Dataset::COMPOSITE {
            for l in 0..3 {
                assert!(mini.iter().any(|e| e.0 == d && e.2 == Some(l)));
            }
        }
    }
}
