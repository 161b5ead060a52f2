//! Dense optical flow between adjacent key-frames with OpenCV's Farneback algorithm
//! (`cv::calcOpticalFlowFarneback`). The parameters are recorded in the prepared file (`PrepInfo::flow_params`,
//! OpenCV's names). Values are raw displacements in pixels of the (112 x 112) key-frames: `u` to the right,
//! `v` downwards, from key-frame k to key-frame k + 1; the engine may normalise them.

use crate::error::{Result, WorkerError};
use crate::prep::datasets::frames::GrayFrame;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Farneback parameters (OpenCV names; the defaults are the common OpenCV-sample settings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlowParams {
    /// Image scale between pyramid levels (< 1).
    pub pyr_scale: f64,
    /// Number of pyramid levels.
    pub levels: i32,
    /// Averaging window size.
    pub winsize: i32,
    /// Iterations per pyramid level.
    pub iterations: i32,
    /// Pixel neighbourhood of the polynomial expansion.
    pub poly_n: i32,
    /// Gaussian sigma of the polynomial expansion.
    pub poly_sigma: f64,
    /// OpenCV flags (0, or 256 = OPTFLOW_FARNEBACK_GAUSSIAN).
    pub flags: i32,
}

impl Default for FlowParams {
    fn default() -> Self {
        FlowParams {
            pyr_scale: 0.5,
            levels: 3,
            winsize: 15,
            iterations: 3,
            poly_n: 5,
            poly_sigma: 1.2,
            flags: 0,
        }
    }
}

impl FlowParams {
    /// The parameters as recorded in `PrepInfo::flow_params`.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        [
            ("pyr_scale", self.pyr_scale),
            ("levels", self.levels as f64),
            ("winsize", self.winsize as f64),
            ("iterations", self.iterations as f64),
            ("poly_n", self.poly_n as f64),
            ("poly_sigma", self.poly_sigma),
            ("flags", self.flags as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A dense flow field.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowField {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Horizontal displacement per pixel (row-major).
    pub u: Vec<f32>,
    /// Vertical displacement per pixel (row-major).
    pub v: Vec<f32>,
}

/// Converts a gray frame to an 8-bit OpenCV matrix (values rounded and clamped to 0..=255).
#[cfg(feature = "opencv")]
pub fn to_mat_u8(f: &GrayFrame) -> Result<opencv::core::Mat> {
    use opencv::core::Mat;
    use opencv::prelude::*;
    let bytes: Vec<u8> = f
        .data
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let m = Mat::new_rows_cols_with_data(f.height as i32, f.width as i32, &bytes)
        .map_err(|e| WorkerError::cv("frame to Mat", e))?;
    m.try_clone()
        .map_err(|e| WorkerError::cv("frame to Mat", e))
}

/// Farneback flow from `a` to `b` (same size).
#[cfg(feature = "opencv")]
pub fn farneback(a: &GrayFrame, b: &GrayFrame, p: &FlowParams) -> Result<FlowField> {
    use opencv::core::{Mat, Vec2f};
    use opencv::prelude::*;
    if a.width != b.width || a.height != b.height {
        return Err(WorkerError::InvalidOption {
            option: "flow".into(),
            message: format!(
                "frames differ in size: {}x{} vs {}x{}",
                a.width, a.height, b.width, b.height
            ),
        });
    }
    let (ma, mb) = (to_mat_u8(a)?, to_mat_u8(b)?);
    let mut flow = Mat::default();
    opencv::video::calc_optical_flow_farneback(
        &ma,
        &mb,
        &mut flow,
        p.pyr_scale,
        p.levels,
        p.winsize,
        p.iterations,
        p.poly_n,
        p.poly_sigma,
        p.flags,
    )
    .map_err(|e| WorkerError::cv("calcOpticalFlowFarneback", e))?;
    let data = flow
        .data_typed::<Vec2f>()
        .map_err(|e| WorkerError::cv("reading flow", e))?;
    let (u, v) = data.iter().map(|d| (d[0], d[1])).unzip();
    Ok(FlowField {
        width: a.width,
        height: a.height,
        u,
        v,
    })
}

/// Area-averaging resize of a `w` x `h` plane to `out` x `out` (OpenCV's `INTER_AREA`: each output pixel
/// is the mean over the input pixels it covers, fractional coverage weighted).
#[cfg(feature = "opencv")]
pub fn resize_area(plane: &[f32], w: usize, h: usize, out: usize) -> Result<Vec<f32>> {
    use opencv::core::{Mat, Size};
    use opencv::prelude::*;
    let m = Mat::new_rows_cols_with_data(h as i32, w as i32, plane)
        .map_err(|e| WorkerError::cv("plane to Mat", e))?;
    let mut r = Mat::default();
    opencv::imgproc::resize(
        &m,
        &mut r,
        Size::new(out as i32, out as i32),
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )
    .map_err(|e| WorkerError::cv("resize", e))?;
    Ok(r.data_typed::<f32>()
        .map_err(|e| WorkerError::cv("reading resized plane", e))?
        .to_vec())
}

/// The 10 flows between 11 key-frames as one `[C, T, H, W]` block (C = 2, or 3 with the magnitude).
#[cfg(feature = "opencv")]
pub fn flow_stack(keyframes: &[GrayFrame], p: &FlowParams, magnitude: bool) -> Result<Vec<f32>> {
    let t = keyframes.len().saturating_sub(1);
    let Some(first) = keyframes.first() else {
        return Ok(Vec::new());
    };
    let hw = first.width * first.height;
    let c = if magnitude { 3 } else { 2 };
    let mut out = vec![0f32; c * t * hw];
    for k in 0..t {
        let f = farneback(&keyframes[k], &keyframes[k + 1], p)?;
        out[k * hw..(k + 1) * hw].copy_from_slice(&f.u);
        out[(t + k) * hw..(t + k + 1) * hw].copy_from_slice(&f.v);
        if magnitude {
            for (i, (u, v)) in f.u.iter().zip(&f.v).enumerate() {
                out[(2 * t + k) * hw + i] = (u * u + v * v).sqrt();
            }
        }
    }
    Ok(out)
}

#[cfg(all(test, feature = "opencv"))]
mod tests {
    use super::*;

    /// A smooth random-looking texture (sum of sinusoids), evaluated at a shifted position.
    fn texture(w: usize, h: usize, dx: f32, dy: f32) -> GrayFrame {
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 - dx, y as f32 - dy);
                let v = 128.0
                    + 40.0 * (xf * 0.21 + yf * 0.07).sin()
                    + 30.0 * (yf * 0.17 - xf * 0.05 + 1.0).sin()
                    + 25.0 * (xf * 0.11 + yf * 0.23 + 2.0).cos();
                data.push(v);
            }
        }
        GrayFrame {
            width: w,
            height: h,
            data,
        }
    }

    /// Tolerance: the mean flow over the central 64 x 64 region is within 0.05 px of the true shift, and
    /// 90 % of those pixels are within 0.25 px.
    #[test]
    fn subpixel_translation_gives_that_flow() {
        let (dx, dy) = (1.3f32, -0.6f32);
        let a = texture(112, 112, 0.0, 0.0);
        let b = texture(112, 112, dx, dy);
        let f = farneback(&a, &b, &FlowParams::default()).unwrap();
        let (mut su, mut sv, mut n, mut close) = (0f64, 0f64, 0usize, 0usize);
        for y in 24..88 {
            for x in 24..88 {
                let i = y * 112 + x;
                su += f.u[i] as f64;
                sv += f.v[i] as f64;
                n += 1;
                if (f.u[i] - dx).abs() < 0.25 && (f.v[i] - dy).abs() < 0.25 {
                    close += 1;
                }
            }
        }
        let (mu, mv) = (su / n as f64, sv / n as f64);
        assert!(
            (mu - dx as f64).abs() < 0.05 && (mv - dy as f64).abs() < 0.05,
            "mean flow ({mu:.3}, {mv:.3})"
        );
        assert!(close as f64 > 0.9 * n as f64, "{close}/{n} within 0.25 px");
    }

    #[test]
    fn stack_layout_is_c_t_h_w() {
        let frames: Vec<GrayFrame> = (0..11)
            .map(|k| texture(32, 24, k as f32 * 0.5, 0.0))
            .collect();
        let s = flow_stack(&frames, &FlowParams::default(), true).unwrap();
        assert_eq!(s.len(), 3 * 10 * 32 * 24);
        let hw = 32 * 24;
        let centre = 12 * 32 + 16;
        // u of flow 3 at the centre ~ 0.5, v ~ 0, magnitude ~ 0.5.
        assert!(
            (s[3 * hw + centre] - 0.5).abs() < 0.15,
            "{}",
            s[3 * hw + centre]
        );
        assert!(s[(10 + 3) * hw + centre].abs() < 0.15);
        assert!((s[(20 + 3) * hw + centre] - 0.5).abs() < 0.15);
        assert_eq!(FlowParams::default().to_map()["winsize"], 15.0);
    }
}
