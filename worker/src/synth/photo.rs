//! The realistic look: real face photographs moved by action-unit displacement fields, with the nuisances
//! of real recordings and no label on any of them.
//!
//! Faces: the 100 face images of the LFW subset that scikit-image ships (`skimage/data/lfw_subset.npy`,
//! 25 x 25 grey crops of real photographs, installed by `scripts/bootstrap.sh` with the project's `.venv`;
//! nothing is downloaded at run time). Each subject gets its own face, upscaled (bicubic) to its own size
//! (96-124 px in a 176 x 160 frame) at its own position, with a fine static skin texture (the 25 px source
//! has none, and optical flow needs some), on its own background. SAMM is written grey, CASME II and SMIC
//! in colour with a per-subject tint.
//!
//! Motion, per frame: the face layer is warped backwards (OpenCV `remap`, bicubic) by the sum of
//! - the clip's action units ([`super::facs`]) at the clip's activation, which rises from the true onset to
//!   the true apex with a random shape and decays towards a residual by the true offset;
//! - head motion: a linear translation drift of up to 1.5 px over the clip plus a 0.1-0.3 px wobble, and a
//!   roll of up to 0.8 degrees, independent of the class;
//! - a blink (AU45) in a quarter of the clips, 100-200 ms long, whatever the class.
//!
//! Then illumination (a global flicker of 0.3-1.5 % at 2-25 Hz and a slow drift of up to 3 %), sensor noise
//! (sigma 1.5-3.5 grey levels by dataset), and compression (JPEG quality 80-95 for the JPEG layouts).
//! Amplitudes are drawn log-uniformly between barely visible and moderate: 0.25-2.5 px peak displacement at
//! the scale of a 112 px face crop, the size `mer prep` resamples faces to.

use super::facs::{self, Au, AuAction};
use crate::error::{Result, WorkerError};
use opencv::core::{Mat, Scalar, Size, BORDER_REPLICATE};
use opencv::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Frame size of the realistic presets.
pub(super) const FRAME_W: usize = 176;
/// Frame height of the realistic presets.
pub(super) const FRAME_H: usize = 160;

/// Where scikit-image keeps the LFW subset inside a Python environment.
const SKIMAGE_LFW: &str = "skimage/data/lfw_subset.npy";

/// The real face photographs subjects are drawn from.
pub struct FaceBank {
    /// The file read.
    pub path: PathBuf,
    side: usize,
    faces: Vec<Vec<f32>>,
}

impl FaceBank {
    /// Finds the LFW subset: `explicit` when given (`mer synth --faces`), else `$MER_FACES`, else the
    /// scikit-image data folder of a `.venv` in the current folder, the executable's folder or one of
    /// their ancestors (where `scripts/bootstrap.sh` installs it).
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        if let Some(p) = std::env::var_os("MER_FACES") {
            return Ok(PathBuf::from(p));
        }
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Ok(d) = std::env::current_dir() {
            roots.extend(d.ancestors().map(Path::to_path_buf));
        }
        if let Ok(exe) = std::env::current_exe() {
            roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
        }
        for root in roots {
            let lib = root.join(".venv").join("lib");
            let Ok(entries) = std::fs::read_dir(&lib) else {
                continue;
            };
            for e in entries.flatten() {
                let cand = e.path().join("site-packages").join(SKIMAGE_LFW);
                if cand.is_file() {
                    return Ok(cand);
                }
            }
        }
        Err(WorkerError::InvalidOption {
            option: "--faces".into(),
            message: format!(
                "the realistic presets draw their faces from scikit-image's LFW subset ({SKIMAGE_LFW}), \
                 which was not found in a .venv here or above; run scripts/bootstrap.sh, or pass --faces \
                 <lfw_subset.npy> or set MER_FACES"
            ),
        })
    }

    /// Reads the face images (the first 100 of the file; the other 100 are its non-faces).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |m: String| WorkerError::layout(path, m);
        let file = std::fs::File::open(path).map_err(|e| WorkerError::io(path, e))?;
        let arr: ndarray::Array3<f64> = ndarray_npy::ReadNpyExt::read_npy(file)
            .map_err(|e| bad(format!("not a float64 (N, H, W) .npy array: {e}")))?;
        let (n, h, w) = arr.dim();
        if h != w || h < 16 || n < 100 {
            return Err(bad(format!(
                "expected at least 100 square face images, found {n} of {h} x {w}"
            )));
        }
        let faces = (0..100)
            .map(|i| {
                arr.index_axis(ndarray::Axis(0), i)
                    .iter()
                    .map(|&v| v as f32)
                    .collect::<Vec<f32>>()
            })
            .collect::<Vec<_>>();
        if faces.iter().flatten().any(|v| !v.is_finite()) {
            return Err(bad("holds a value that is not a finite number".into()));
        }
        Ok(FaceBank {
            path: path.to_path_buf(),
            side: h,
            faces,
        })
    }

    /// Number of distinct faces.
    pub fn len(&self) -> usize {
        self.faces.len()
    }

    /// True when the bank holds no face (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.faces.is_empty()
    }
}

fn cv_err(what: &str) -> impl Fn(opencv::Error) -> WorkerError + '_ {
    move |e| WorkerError::cv(what.to_string(), e)
}

fn mat_f32(data: &[f32], w: usize, h: usize) -> Result<Mat> {
    let m = Mat::new_rows_cols_with_data(h as i32, w as i32, data)
        .map_err(cv_err("building a synthetic frame"))?;
    m.try_clone().map_err(cv_err("building a synthetic frame"))
}

fn mat_vec(m: &Mat) -> Result<Vec<f32>> {
    Ok(m.data_typed::<f32>()
        .map_err(cv_err("reading a synthetic frame"))?
        .to_vec())
}

/// Unit white noise over a `w x h` frame, Gaussian-blurred with `sigma` pixels (static textures).
fn blurred_noise(
    w: usize,
    h: usize,
    sigma: f64,
    rng: &mut ChaCha8Rng,
    what: &str,
) -> Result<Vec<f32>> {
    let normal = Normal::new(0.0f32, 1.0).map_err(|e| WorkerError::Synth(e.to_string()))?;
    let noise: Vec<f32> = (0..w * h).map(|_| normal.sample(rng)).collect();
    let mut blurred = Mat::default();
    opencv::imgproc::gaussian_blur_def(
        &mat_f32(&noise, w, h)?,
        &mut blurred,
        Size::new(0, 0),
        sigma,
    )
    .map_err(cv_err(what))?;
    mat_vec(&blurred)
}

/// One subject's appearance: the face layer and its soft mask at rest, the background, colour, noise.
#[derive(Debug, Clone)]
pub(super) struct PhotoSubject {
    /// Index of the LFW face used.
    pub(super) face_index: usize,
    /// Face crop side in pixels.
    pub(super) size: f32,
    /// Face crop centre in the frame.
    pub(super) cx: f32,
    pub(super) cy: f32,
    face: Vec<f32>,
    mask: Vec<f32>,
    background: Vec<f32>,
    /// BGR multipliers for the colour layouts.
    pub(super) tint: [f32; 3],
}

impl PhotoSubject {
    /// Builds subject appearance from face `face_index` of the bank.
    pub(super) fn new(bank: &FaceBank, face_index: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let (w, h) = (FRAME_W, FRAME_H);
        let size: f32 = rng.random_range(96.0..124.0);
        let s = size.round() as i32;
        let src = mat_f32(&bank.faces[face_index], bank.side, bank.side)?;
        let mut up = Mat::default();
        opencv::imgproc::resize(
            &src,
            &mut up,
            Size::new(s, s),
            0.0,
            0.0,
            opencv::imgproc::INTER_CUBIC,
        )
        .map_err(cv_err("upscaling a face"))?;
        let up = mat_vec(&up)?;
        // Contrast of a face photograph in grey levels, then the face's own mean level.
        let n = up.len() as f32;
        let mean = up.iter().sum::<f32>() / n;
        let sd = (up.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n)
            .sqrt()
            .max(1e-3);
        let level: f32 = rng.random_range(105.0..155.0);
        let contrast: f32 = rng.random_range(38.0..52.0);
        let cx = w as f32 / 2.0 + rng.random_range(-10.0..10.0);
        let cy = h as f32 / 2.0 + rng.random_range(-6.0..6.0);
        let (x0, y0) = (cx - s as f32 / 2.0, cy - s as f32 / 2.0);
        // Fine skin texture: white noise blurred to about 1 px, multiplied into the face.
        let grain = blurred_noise(w, h, 0.9, rng, "drawing skin texture")?;
        let grain_amp: f32 = rng.random_range(0.015..0.03) / 0.3;
        let mut face = vec![level; w * h];
        let mut mask = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 - x0, y as f32 - y0);
                let (ix, iy) = (fx.round() as i32, fy.round() as i32);
                let i = y * w + x;
                if ix >= 0 && iy >= 0 && ix < s && iy < s {
                    let v = up[iy as usize * s as usize + ix as usize];
                    face[i] = (level + contrast * (v - mean) / sd).clamp(5.0, 250.0)
                        * (1.0 + grain_amp * grain[i]);
                }
                // A rounded-square mask (superellipse) with a soft edge of about 6 % of the crop.
                let (u, v) = ((fx / s as f32 - 0.5) * 2.0, (fy / s as f32 - 0.5) * 2.0);
                let q = (u.abs().powi(4) + v.abs().powi(4)).powf(0.25);
                mask[i] = ((1.0 - q) / 0.12 + 0.5).clamp(0.0, 1.0);
            }
        }
        // Background: a level, a gradient and a soft static texture.
        let bg_level: f32 = rng.random_range(25.0..200.0);
        let (gx, gy): (f32, f32) = (rng.random_range(-30.0..30.0), rng.random_range(-20.0..20.0));
        let soft = blurred_noise(w, h, 4.0, rng, "drawing a background")?;
        let background = (0..w * h)
            .map(|i| {
                let (x, y) = (
                    (i % w) as f32 / w as f32 - 0.5,
                    (i / w) as f32 / h as f32 - 0.5,
                );
                (bg_level + gx * x + gy * y + 40.0 * soft[i]).clamp(0.0, 255.0)
            })
            .collect();
        let warm: f32 = rng.random_range(0.0..1.0);
        Ok(PhotoSubject {
            face_index,
            size,
            cx,
            cy,
            face,
            mask,
            background,
            tint: [0.78 + 0.08 * warm, 0.95, 1.04 + 0.06 * warm],
        })
    }
}

impl PhotoSubject {
    /// True when the Haar detector `mer prep` uses finds this face at rest under four draws of sensor
    /// noise (a borderline face is missed on some frames): the real datasets hold frontal faces that
    /// detectors find, so a subject whose photograph it misses is redrawn.
    pub(super) fn detectable(
        &self,
        detector: &mut crate::prep::face::FaceDetector,
        rng: &mut ChaCha8Rng,
    ) -> Result<bool> {
        for _ in 0..4 {
            if !self.detectable_once(detector, rng)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn detectable_once(
        &self,
        detector: &mut crate::prep::face::FaceDetector,
        rng: &mut ChaCha8Rng,
    ) -> Result<bool> {
        let noise = Normal::new(0.0f32, 4.0).map_err(|e| WorkerError::Synth(e.to_string()))?;
        let bytes: Vec<u8> = (0..FRAME_W * FRAME_H)
            .map(|i| {
                let m = self.mask[i];
                let v = self.background[i] * (1.0 - m) + self.face[i] * m + noise.sample(rng);
                v.round().clamp(0.0, 255.0) as u8
            })
            .collect();
        let m = Mat::new_rows_cols_with_data(FRAME_H as i32, FRAME_W as i32, &bytes)
            .map_err(cv_err("building a synthetic frame"))?
            .try_clone()
            .map_err(cv_err("building a synthetic frame"))?;
        Ok(detector.detect(&m)?.is_some())
    }
}

/// Smooth head motion over a clip, in pixels and radians; the same physical motion at any frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadMotion {
    /// Translation drift over the whole clip (x, y), pixels.
    pub drift_px: (f32, f32),
    /// Roll drift over the whole clip, degrees.
    pub roll_deg: f32,
    /// Wobble: (amplitude px, frequency Hz, phase) for x and for y.
    pub wobble: [(f32, f32, f32); 2],
}

/// A clip's label-free nuisances, recorded in `synth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nuisances {
    /// Blink: centre frame and half-duration in frames.
    pub blink: Option<(f32, f32)>,
    /// Head motion.
    pub head: HeadMotion,
    /// Illumination flicker: relative amplitude, frequency (Hz), phase.
    pub flicker: (f32, f32, f32),
    /// Relative illumination drift over the clip.
    pub light_drift: f32,
    /// Sensor noise sigma, grey levels.
    pub noise_sigma: f32,
    /// JPEG quality of the written frames (`None` for SMIC's BMP files).
    pub jpeg_quality: Option<i32>,
}

/// The true timing of a clip's action (the annotation is this plus annotator noise).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrueTiming {
    /// First frame that moves.
    pub onset: f32,
    /// Frame of the peak.
    pub apex: f32,
    /// Frame by which the action has decayed to its residual.
    pub offset: f32,
    /// Shape of the rise (exponent; 1 is a raised cosine).
    pub rise: f32,
    /// Activation left at the offset (fades over 50 ms after it).
    pub residual: f32,
}

impl TrueTiming {
    /// Activation in [0, 1] at frame `t`.
    pub fn level(&self, t: f32, fps: u32) -> f32 {
        let cos_ramp = |x: f32| 0.5 - 0.5 * (std::f32::consts::PI * x.clamp(0.0, 1.0)).cos();
        if t <= self.onset {
            0.0
        } else if t <= self.apex {
            cos_ramp((t - self.onset) / (self.apex - self.onset).max(1.0)).powf(self.rise)
        } else if t <= self.offset {
            1.0 - (1.0 - self.residual)
                * cos_ramp((t - self.apex) / (self.offset - self.apex).max(1.0))
        } else {
            let fade = 0.05 * fps as f32;
            self.residual * (1.0 - (t - self.offset) / fade).max(0.0)
        }
    }
}

/// Everything that moves in one realistic clip.
#[derive(Debug, Clone)]
pub(super) struct PhotoClip {
    /// The action units (main class and any co-occurring one), each with its peak displacement in pixels
    /// at the subject's face size.
    pub(super) actions: Vec<(AuAction, f32)>,
    pub(super) timing: TrueTiming,
    pub(super) nuisances: Nuisances,
    pub(super) frames: (u32, u32),
}

impl PhotoClip {
    /// Draws the nuisances of a clip over frames `first..=last` at `fps`.
    pub(super) fn draw_nuisances(
        first: u32,
        last: u32,
        fps: u32,
        noise_sigma: f32,
        jpeg: Option<(i32, i32)>,
        rng: &mut ChaCha8Rng,
    ) -> Nuisances {
        let blink = if rng.random_bool(0.25) {
            let c = rng.random_range(first as f32..=last as f32);
            let half = rng.random_range(0.05..0.1) * fps as f32;
            Some((c, half))
        } else {
            None
        };
        let mut r = |a: f32, b: f32| rng.random_range(a..b);
        let head = HeadMotion {
            drift_px: (r(-1.5, 1.5), r(-1.0, 1.0)),
            roll_deg: r(-0.8, 0.8),
            wobble: [
                (r(0.1, 0.3), r(0.5, 4.0), r(0.0, std::f32::consts::TAU)),
                (r(0.1, 0.3), r(0.5, 4.0), r(0.0, std::f32::consts::TAU)),
            ],
        };
        Nuisances {
            blink,
            head,
            flicker: (r(0.003, 0.015), r(2.0, 25.0), r(0.0, std::f32::consts::TAU)),
            light_drift: r(-0.03, 0.03),
            noise_sigma: noise_sigma * r(0.8, 1.2),
            jpeg_quality: jpeg.map(|(lo, hi)| rng.random_range(lo..=hi)),
        }
    }
}

/// Renders frame `t` of a realistic clip: grey levels 0..255, with noise.
pub(super) fn render(
    subject: &PhotoSubject,
    clip: &PhotoClip,
    fps: u32,
    t: u32,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<f32>> {
    let (w, h) = (FRAME_W, FRAME_H);
    let tf = t as f32;
    let n = &clip.nuisances;
    let (first, last) = clip.frames;
    let span = (last - first).max(1) as f32;
    let progress = (tf - first as f32) / span;
    let sec = (tf - first as f32) / fps as f32;
    let wob = |(a, f, ph): (f32, f32, f32)| a * (std::f32::consts::TAU * f * sec + ph).sin();
    let tx = n.head.drift_px.0 * progress + wob(n.head.wobble[0]);
    let ty = n.head.drift_px.1 * progress + wob(n.head.wobble[1]);
    let roll = (n.head.roll_deg * progress).to_radians();
    let (cx, cy) = (subject.cx + tx, subject.cy + ty);
    // Displacement of every pixel: head translation and roll about the face centre, then the skin's.
    let mut field: Vec<(f32, f32)> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32 - subject.cx, (i / w) as f32 - subject.cy);
            (tx - roll * y, ty + roll * x)
        })
        .collect();
    let level = clip.timing.level(tf, fps);
    let mut acts: Vec<(AuAction, f32)> = clip
        .actions
        .iter()
        .map(|&(a, px)| (a, px * level))
        .collect();
    if let Some((c, half)) = n.blink {
        let closed = (1.0 - ((tf - c) / half).abs()).max(0.0);
        if closed > 0.0 {
            acts.push((
                AuAction {
                    au: Au::Au45,
                    strength: 1.0,
                    side: None,
                },
                0.055 * subject.size * closed,
            ));
        }
    }
    let at = facs::FacePlacement {
        cx,
        cy,
        size: subject.size,
        roll,
    };
    facs::add_field(&mut field, w, h, at, &acts);
    let map_x: Vec<f32> = field
        .iter()
        .enumerate()
        .map(|(i, d)| (i % w) as f32 - d.0)
        .collect();
    let map_y: Vec<f32> = field
        .iter()
        .enumerate()
        .map(|(i, d)| (i / w) as f32 - d.1)
        .collect();
    let (mx, my) = (mat_f32(&map_x, w, h)?, mat_f32(&map_y, w, h)?);
    let warp = |src: &[f32]| -> Result<Vec<f32>> {
        let mut out = Mat::default();
        opencv::imgproc::remap(
            &mat_f32(src, w, h)?,
            &mut out,
            &mx,
            &my,
            opencv::imgproc::INTER_CUBIC,
            BORDER_REPLICATE,
            Scalar::default(),
        )
        .map_err(cv_err("warping a synthetic face"))?;
        mat_vec(&out)
    };
    let face = warp(&subject.face)?;
    let mask = warp(&subject.mask)?;
    let gain = 1.0
        + n.flicker.0 * (std::f32::consts::TAU * n.flicker.1 * sec + n.flicker.2).sin()
        + n.light_drift * progress;
    let noise = Normal::new(0.0f32, n.noise_sigma.max(1e-3))
        .map_err(|e| WorkerError::Synth(e.to_string()))?;
    Ok((0..w * h)
        .map(|i| {
            let m = mask[i].clamp(0.0, 1.0);
            let v = subject.background[i] * (1.0 - m) + face[i] * m;
            (v * gain + noise.sample(rng)).clamp(0.0, 255.0)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_rises_to_the_apex_and_decays_to_the_residual() {
        let t = TrueTiming {
            onset: 10.0,
            apex: 20.0,
            offset: 40.0,
            rise: 1.0,
            residual: 0.2,
        };
        assert_eq!(t.level(10.0, 200), 0.0);
        assert!((t.level(20.0, 200) - 1.0).abs() < 1e-6);
        assert!((t.level(40.0, 200) - 0.2).abs() < 1e-6);
        assert!(t.level(15.0, 200) > 0.3 && t.level(15.0, 200) < 0.7);
        assert_eq!(t.level(60.0, 200), 0.0);
    }

    #[test]
    fn a_missing_or_wrong_face_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("faces.npy");
        std::fs::write(&p, b"not an npy").unwrap();
        let e = FaceBank::load(&p).err().unwrap().to_string();
        assert!(e.contains("faces.npy"), "{e}");
        let e = FaceBank::load(&dir.path().join("none.npy"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.npy"), "{e}");
    }
}
