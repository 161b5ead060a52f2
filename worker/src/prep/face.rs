//! Face crop: detect the face on the clip's onset frame with OpenCV's Haar frontal-face cascade (from
//! opencv-data, `/usr/share/opencv4/haarcascades`, or `$MER_HAAR_DIR`), align by the eyes where the eye
//! cascade finds two of them in the upper half of the face (rotation about the box centre so that the eyes
//! are level; angles above 20 degrees are ignored as false detections), and apply the SAME box and rotation to
//! every frame of the clip, resized to `size x size` (area interpolation).
//!
//! Where no face is found the clip fails with an error naming it, unless the user turns on the documented
//! fallback (`mer prep --face-fallback`): then the central square of the full frame is used, a warning is
//! logged, and the sample's `crop_box` shows that square.

use crate::error::{Result, WorkerError};
use crate::prep::datasets::frames::GrayFrame;
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;
use std::path::{Path, PathBuf};

/// Default folder of the Haar cascades (Debian's opencv-data).
pub const DEFAULT_HAAR_DIR: &str = "/usr/share/opencv4/haarcascades";
/// The frontal-face cascade file.
pub const FACE_CASCADE: &str = "haarcascade_frontalface_default.xml";
/// The eye cascade file.
pub const EYE_CASCADE: &str = "haarcascade_eye.xml";

/// The cascade folder: `$MER_HAAR_DIR` when set, else [`DEFAULT_HAAR_DIR`].
pub fn haar_dir() -> PathBuf {
    std::env::var_os("MER_HAAR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HAAR_DIR))
}

/// Reads an image file as 8-bit grayscale.
pub fn read_gray(path: &Path) -> Result<Mat> {
    let m = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_GRAYSCALE)
        .map_err(|e| WorkerError::cv(format!("reading {}", path.display()), e))?;
    if m.empty() {
        return Err(WorkerError::layout(path, "unreadable image"));
    }
    Ok(m)
}

/// Converts an 8-bit gray Mat to a [`GrayFrame`].
pub fn mat_to_frame(m: &Mat) -> Result<GrayFrame> {
    let m = m.try_clone().map_err(|e| WorkerError::cv("copy", e))?;
    let data = m
        .data_typed::<u8>()
        .map_err(|e| WorkerError::cv("reading pixels", e))?;
    Ok(GrayFrame {
        width: m.cols() as usize,
        height: m.rows() as usize,
        data: data.iter().map(|&v| v as f32).collect(),
    })
}

/// The crop found on the onset frame and applied to every frame of the clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceCrop {
    /// Box in source pixels: x, y, width, height.
    pub rect: [i32; 4],
    /// Rotation (degrees, OpenCV convention: positive = counter-clockwise) that levels the eyes.
    pub angle: f64,
    /// True when the eyes were found and used.
    pub eyes: bool,
    /// True when this is the full-frame fallback (no face found).
    pub fallback: bool,
}

impl FaceCrop {
    /// The central square of a `w x h` frame (the fallback).
    pub fn full_frame(w: i32, h: i32) -> Self {
        let s = w.min(h);
        FaceCrop {
            rect: [(w - s) / 2, (h - s) / 2, s, s],
            angle: 0.0,
            eyes: false,
            fallback: true,
        }
    }

    /// Applies the crop to a source frame: rotate about the box centre, cut the box, resize to `size`.
    pub fn apply(&self, src: &Mat, size: u32) -> Result<GrayFrame> {
        let [x, y, w, h] = self.rect;
        let cx = x as f32 + w as f32 / 2.0;
        let cy = y as f32 + h as f32 / 2.0;
        let mut cut = Mat::default();
        if self.angle.abs() > 1e-3 {
            // Rotation about the box centre, then translation so that the box lands at (0, 0).
            let mut m = opencv::imgproc::get_rotation_matrix_2d(
                opencv::core::Point2f::new(cx, cy),
                self.angle,
                1.0,
            )
            .map_err(|e| WorkerError::cv("rotation matrix", e))?;
            for (r, off) in [(0, x as f64), (1, y as f64)] {
                let v = m
                    .at_2d_mut::<f64>(r, 2)
                    .map_err(|e| WorkerError::cv("rotation matrix", e))?;
                *v -= off;
            }
            opencv::imgproc::warp_affine(
                src,
                &mut cut,
                &m,
                Size::new(w, h),
                opencv::imgproc::INTER_LINEAR,
                opencv::core::BORDER_REPLICATE,
                opencv::core::Scalar::default(),
            )
            .map_err(|e| WorkerError::cv("aligning the face", e))?;
        } else {
            let r = Rect::new(x, y, w, h);
            let roi = Mat::roi(src, r).map_err(|e| WorkerError::cv("cropping the face", e))?;
            cut = roi
                .try_clone()
                .map_err(|e| WorkerError::cv("cropping the face", e))?;
        }
        let mut out = Mat::default();
        opencv::imgproc::resize(
            &cut,
            &mut out,
            Size::new(size as i32, size as i32),
            0.0,
            0.0,
            opencv::imgproc::INTER_AREA,
        )
        .map_err(|e| WorkerError::cv("resizing the face", e))?;
        mat_to_frame(&out)
    }
}

/// Haar face and eye detectors (one per thread: OpenCV's classifier is not `Sync`).
pub struct FaceDetector {
    face: CascadeClassifier,
    eyes: CascadeClassifier,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaceDetector(haar frontalface + eyes)")
    }
}

impl FaceDetector {
    /// Loads the cascades from [`haar_dir`].
    pub fn new() -> Result<Self> {
        Self::from_dir(&haar_dir())
    }

    /// Loads the cascades from a folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let load = |f: &str| -> Result<CascadeClassifier> {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(WorkerError::layout(
                    &p,
                    "Haar cascade missing (install opencv-data or set MER_HAAR_DIR)",
                ));
            }
            let c = CascadeClassifier::new(&p)
                .map_err(|e| WorkerError::cv(format!("loading {}", p.display()), e))?;
            if c.empty().unwrap_or(true) {
                return Err(WorkerError::layout(&p, "Haar cascade could not be loaded"));
            }
            Ok(c)
        };
        Ok(FaceDetector {
            face: load(FACE_CASCADE)?,
            eyes: load(EYE_CASCADE)?,
        })
    }

    /// Detects the largest face on a gray frame and the eye angle; `None` when no face is found.
    pub fn detect(&mut self, gray: &Mat) -> Result<Option<FaceCrop>> {
        let mut eq = Mat::default();
        opencv::imgproc::equalize_hist(gray, &mut eq)
            .map_err(|e| WorkerError::cv("equalizeHist", e))?;
        let (w, h) = (gray.cols(), gray.rows());
        let min_side = (w.min(h) / 5).max(24);
        let mut faces = Vector::<Rect>::new();
        self.face
            .detect_multi_scale(
                &eq,
                &mut faces,
                1.1,
                4,
                0,
                Size::new(min_side, min_side),
                Size::default(),
            )
            .map_err(|e| WorkerError::cv("face detection", e))?;
        let Some(face) = faces.iter().max_by_key(|r| r.area()) else {
            return Ok(None);
        };
        // Eyes in the upper half of the face box. Small faces are upscaled (to a 240 px wide face) so that
        // the eye cascade has pixels to work on.
        let upper = Rect::new(face.x, face.y, face.width, face.height / 2);
        let roi = Mat::roi(&eq, upper)
            .map_err(|e| WorkerError::cv("eye region", e))?
            .try_clone()
            .map_err(|e| WorkerError::cv("eye region", e))?;
        let k = (240.0 / face.width as f64).max(1.0);
        let mut big = Mat::default();
        opencv::imgproc::resize(
            &roi,
            &mut big,
            Size::default(),
            k,
            k,
            opencv::imgproc::INTER_LINEAR,
        )
        .map_err(|e| WorkerError::cv("eye region", e))?;
        let fw = (face.width as f64 * k) as i32;
        let mut eyes = Vector::<Rect>::new();
        self.eyes
            .detect_multi_scale(
                &big,
                &mut eyes,
                1.05,
                2,
                0,
                Size::new(fw / 8, fw / 8),
                Size::new(fw / 2, fw / 2),
            )
            .map_err(|e| WorkerError::cv("eye detection", e))?;
        // Each eye's centre is refined to the centroid of its darkest pixels (the iris/pupil), below the
        // top third of the box (where the brow lies): the box centres alone jitter by a few pixels.
        let mut centres: Vec<(f64, f64, i32)> = Vec::new();
        for r in eyes.iter() {
            let (x0, y0) = (
                face.x as f64 + r.x as f64 / k,
                face.y as f64 + r.y as f64 / k,
            );
            let (ew, eh) = (r.width as f64 / k, r.height as f64 / k);
            let (c, _) = dark_centroid(&eq, x0, y0 + eh / 3.0, ew, eh * 2.0 / 3.0)?
                .unwrap_or(((x0 + ew / 2.0, y0 + eh / 2.0), 0));
            centres.push((c.0, c.1, r.area()));
        }
        centres.sort_by_key(|c| std::cmp::Reverse(c.2));
        centres.truncate(2);
        let mut angle = 0.0;
        let mut used = false;
        if centres.len() == 2 {
            centres.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (l, r) = (centres[0], centres[1]);
            let dx = r.0 - l.0;
            if dx > face.width as f64 * 0.2 {
                let a = (r.1 - l.1).atan2(dx).to_degrees();
                if a.abs() <= 20.0 {
                    angle = a;
                    used = true;
                }
            }
        }
        Ok(Some(FaceCrop {
            rect: [face.x, face.y, face.width, face.height],
            angle,
            eyes: used,
            fallback: false,
        }))
    }
}

/// Centroid of the darkest 10 % of the pixels in a box of an 8-bit image (with their count); `None` for an
/// empty box.
fn dark_centroid(img: &Mat, x: f64, y: f64, w: f64, h: f64) -> Result<Option<((f64, f64), usize)>> {
    let (x0, y0) = (x.round().max(0.0) as i32, y.round().max(0.0) as i32);
    let x1 = ((x + w).round() as i32).min(img.cols());
    let y1 = ((y + h).round() as i32).min(img.rows());
    let mut px: Vec<(u8, i32, i32)> = Vec::new();
    for yy in y0..y1 {
        for xx in x0..x1 {
            let v = *img
                .at_2d::<u8>(yy, xx)
                .map_err(|e| WorkerError::cv("eye centre", e))?;
            px.push((v, xx, yy));
        }
    }
    if px.is_empty() {
        return Ok(None);
    }
    px.sort_by_key(|p| p.0);
    let n = (px.len() / 10).max(1);
    let (sx, sy) = px[..n]
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.1 as f64, b + p.2 as f64));
    Ok(Some(((sx / n as f64, sy / n as f64), n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_frame_fallback_is_the_central_square() {
        assert_eq!(FaceCrop::full_frame(160, 120).rect, [20, 0, 120, 120]);
        let m = Mat::new_rows_cols_with_default(
            120,
            160,
            opencv::core::CV_8UC1,
            opencv::core::Scalar::all(7.0),
        )
        .unwrap();
        let f = FaceCrop::full_frame(160, 120).apply(&m, 16).unwrap();
        assert_eq!((f.width, f.height), (16, 16));
        assert!(f.data.iter().all(|&v| v == 7.0));
    }

    #[test]
    fn blank_frame_has_no_face_and_rotation_keeps_size() {
        let mut d = FaceDetector::new().unwrap();
        let m = Mat::new_rows_cols_with_default(
            140,
            160,
            opencv::core::CV_8UC1,
            opencv::core::Scalar::all(90.0),
        )
        .unwrap();
        assert!(d.detect(&m).unwrap().is_none());
        let c = FaceCrop {
            rect: [10, 10, 100, 100],
            angle: 5.0,
            eyes: true,
            fallback: false,
        };
        let f = c.apply(&m, 32).unwrap();
        assert_eq!(f.data.len(), 32 * 32);
        assert!(FaceDetector::from_dir(Path::new("/nonexistent"))
            .unwrap_err()
            .to_string()
            .contains("Haar cascade missing"));
    }
}

#[cfg(test)]
mod synth_face_tests {
    use super::*;

    /// On generated faces the cascade finds the face, and the eyes where it can; a face rotated by a known
    /// angle is levelled again by the eye alignment.
    #[test]
    fn eye_alignment_measures_a_known_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::synth::generate(crate::synth::Preset::Tiny, 4, dir.path()).unwrap();
        let recs = crate::prep::datasets::casme2::read(&s.casme2).unwrap();
        let mut det = FaceDetector::new().unwrap();
        let (mut eyes, mut measured) = (0, Vec::new());
        for r in &recs {
            let f = crate::prep::datasets::frames::find_frame(&r.frames, r.onset).unwrap();
            let m = read_gray(&f.path).unwrap();
            let c = det.detect(&m).unwrap().unwrap();
            eyes += c.eyes as usize;
            // The generated faces are drawn level.
            assert!(
                !c.eyes || c.angle.abs() < 3.0,
                "{}: eye angle {}",
                r.id(),
                c.angle
            );
            // Rotate the image by 8 degrees about its centre and detect again.
            let centre = opencv::core::Point2f::new(m.cols() as f32 / 2.0, m.rows() as f32 / 2.0);
            let rot = opencv::imgproc::get_rotation_matrix_2d(centre, 8.0, 1.0).unwrap();
            let mut r8 = Mat::default();
            opencv::imgproc::warp_affine(
                &m,
                &mut r8,
                &rot,
                m.size().unwrap(),
                opencv::imgproc::INTER_LINEAR,
                opencv::core::BORDER_REPLICATE,
                opencv::core::Scalar::default(),
            )
            .unwrap();
            if let Some(c8) = det.detect(&r8).unwrap() {
                if c8.eyes {
                    measured.push(c8.angle - c.angle);
                }
            }
        }
        eprintln!(
            "eyes found on {eyes}/{} faces; rotation measured {:?}",
            recs.len(),
            measured
        );
        assert!(
            eyes * 2 >= recs.len(),
            "eyes found on only {eyes}/{} generated faces",
            recs.len()
        );
        assert!(!measured.is_empty());
        // OpenCV's positive angle rotates the image counter-clockwise: the right eye moves up, so the
        // measured eye angle is about -8 degrees relative to the unrotated face.
        let mean = measured.iter().sum::<f64>() / measured.len() as f64;
        assert!((mean + 8.0).abs() < 2.0, "{measured:?}");
        for a in &measured {
            assert!((a + 8.0).abs() < 4.0, "{measured:?}");
        }
    }
}
