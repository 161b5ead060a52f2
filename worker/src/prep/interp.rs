//! Frame interpolation for key-frame synthesis (the paper used AdaConv, which has no public weights).
//!
//! The interpolator is pluggable ([`FrameInterpolator`]):
//! - [`FarnebackInterpolator`] (default, feature `opencv`): computes the Farneback flow F from frame A to
//!   frame B, warps A forward and B backward half-way along it and blends:
//!   `M(q) = 0.5 * A(q - F(q)/2) + 0.5 * B(q + F(q)/2)` (bilinear sampling, borders clamped).
//! - [`TorchScriptInterpolator`]: any TorchScript model `forward(a, b) -> middle` on `[1, C, H, W]` float
//!   tensors in 0..1 (e.g. an exported RIFE or FILM; C = 1 or 3, gray is replicated for 3). Its name in the
//!   prepared file is `torchscript:<file name>:<sha256 prefix>`.

use crate::error::{Result, WorkerError};
use crate::prep::datasets::frames::GrayFrame;
use std::path::Path;

/// Synthesizes the frame half-way between two frames.
pub trait FrameInterpolator: Send + Sync {
    /// The name recorded in the prepared file (`PrepInfo::interpolator`).
    fn name(&self) -> String;
    /// The frame half-way between `a` and `b` (same size as both).
    fn midpoint(&self, a: &GrayFrame, b: &GrayFrame) -> Result<GrayFrame>;
}

/// Bilinear sample of `f` at (x, y) with clamped borders.
pub fn sample_bilinear(f: &GrayFrame, x: f32, y: f32) -> f32 {
    let w = f.width as isize;
    let h = f.height as isize;
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let x0 = x.floor() as isize;
    let y0 = y.floor() as isize;
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let fx = x - x0 as f32;
    let fy = y - y0 as f32;
    let p = |xx: isize, yy: isize| f.data[(yy * w + xx) as usize];
    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
    let bot = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
    top * (1.0 - fy) + bot * fy
}

fn same_size(a: &GrayFrame, b: &GrayFrame) -> Result<()> {
    if a.width != b.width || a.height != b.height || a.data.len() != a.width * a.height {
        return Err(WorkerError::InvalidOption {
            option: "interpolator".into(),
            message: format!(
                "frames differ in size: {}x{} vs {}x{}",
                a.width, a.height, b.width, b.height
            ),
        });
    }
    Ok(())
}

/// The default interpolator: warp both frames half-way along their Farneback flow and blend.
#[cfg(feature = "opencv")]
#[derive(Debug, Clone, Default)]
pub struct FarnebackInterpolator {
    /// Farneback settings used for the interpolation flow.
    pub params: crate::prep::flow::FlowParams,
}

#[cfg(feature = "opencv")]
impl FrameInterpolator for FarnebackInterpolator {
    fn name(&self) -> String {
        "farneback-warp-blend".into()
    }

    fn midpoint(&self, a: &GrayFrame, b: &GrayFrame) -> Result<GrayFrame> {
        same_size(a, b)?;
        let flow = crate::prep::flow::farneback(a, b, &self.params)?;
        let mut data = Vec::with_capacity(a.data.len());
        for y in 0..a.height {
            for x in 0..a.width {
                let i = y * a.width + x;
                let (hu, hv) = (0.5 * flow.u[i], 0.5 * flow.v[i]);
                let pa = sample_bilinear(a, x as f32 - hu, y as f32 - hv);
                let pb = sample_bilinear(b, x as f32 + hu, y as f32 + hv);
                data.push(0.5 * (pa + pb));
            }
        }
        Ok(GrayFrame {
            width: a.width,
            height: a.height,
            data,
        })
    }
}

/// A TorchScript frame-interpolation model (`forward(a, b) -> middle`), run on the CPU.
pub struct TorchScriptInterpolator {
    module: std::sync::Mutex<tch::CModule>,
    channels: i64,
    name: String,
}

impl std::fmt::Debug for TorchScriptInterpolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchScriptInterpolator")
            .field("name", &self.name)
            .field("channels", &self.channels)
            .finish()
    }
}

impl TorchScriptInterpolator {
    /// Loads a TorchScript file; `channels` is what the model expects (1 = gray, 3 = gray replicated).
    pub fn load(path: &Path, channels: i64) -> Result<Self> {
        if channels != 1 && channels != 3 {
            return Err(WorkerError::InvalidOption {
                option: "--interp-channels".into(),
                message: format!("{channels} is not 1 or 3"),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| WorkerError::io(path, e))?;
        let hash = mer_shared::digest::sha256_hex(&bytes);
        let module = tch::CModule::load_on_device(path, tch::Device::Cpu).map_err(|e| {
            WorkerError::torch(
                format!("loading TorchScript interpolator {}", path.display()),
                e,
            )
        })?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(TorchScriptInterpolator {
            module: std::sync::Mutex::new(module),
            channels,
            name: format!("torchscript:{file}:{}", &hash[..16]),
        })
    }

    fn to_tensor(&self, f: &GrayFrame) -> tch::Tensor {
        let t =
            tch::Tensor::from_slice(&f.data).view([1, 1, f.height as i64, f.width as i64]) / 255.0;
        if self.channels == 3 {
            t.repeat([1, 3, 1, 1])
        } else {
            t
        }
    }
}

impl FrameInterpolator for TorchScriptInterpolator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn midpoint(&self, a: &GrayFrame, b: &GrayFrame) -> Result<GrayFrame> {
        same_size(a, b)?;
        let (ta, tb) = (self.to_tensor(a), self.to_tensor(b));
        let out = {
            let m = self.module.lock().map_err(|_| WorkerError::Torch {
                context: "interpolator".into(),
                message: "poisoned lock".into(),
            })?;
            tch::no_grad(|| m.forward_ts(&[ta, tb]))
                .map_err(|e| WorkerError::torch("running the TorchScript interpolator", e))?
        };
        let want = [1, self.channels, a.height as i64, a.width as i64];
        if out.size() != want {
            return Err(WorkerError::Torch {
                context: "TorchScript interpolator output".into(),
                message: format!("shape {:?}, expected {:?}", out.size(), want),
            });
        }
        let gray = (out.mean_dim(1, false, tch::Kind::Float) * 255.0)
            .clamp(0.0, 255.0)
            .flatten(0, -1);
        let data: Vec<f32> = Vec::<f32>::try_from(&gray)
            .map_err(|e| WorkerError::torch("reading interpolator output", e))?;
        Ok(GrayFrame {
            width: a.width,
            height: a.height,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_sampling() {
        let f = GrayFrame {
            width: 2,
            height: 2,
            data: vec![0.0, 10.0, 20.0, 30.0],
        };
        assert_eq!(sample_bilinear(&f, 0.5, 0.0), 5.0);
        assert_eq!(sample_bilinear(&f, 0.5, 0.5), 15.0);
        assert_eq!(sample_bilinear(&f, -3.0, 9.0), 20.0);
    }

    fn python() -> std::path::PathBuf {
        mer_shared::fixtures::project_python()
    }

    #[test]
    fn torchscript_interpolator_runs_a_scripted_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("mid.pt");
        let script = format!(
            "import torch\nclass M(torch.nn.Module):\n    def forward(self, a, b):\n        return 0.25 * a + 0.75 * b\n\
             ex = (torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5))\ntorch.jit.trace(M(), ex).save(r'{}')\n",
            model.display()
        );
        let st = std::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        assert!(st.success());
        let it = TorchScriptInterpolator::load(&model, 3).unwrap();
        assert!(it.name().starts_with("torchscript:mid.pt:"));
        let a = GrayFrame::filled(5, 4, 100.0);
        let b = GrayFrame::filled(5, 4, 200.0);
        let m = it.midpoint(&a, &b).unwrap();
        assert_eq!((m.width, m.height), (5, 4));
        assert!(
            m.data.iter().all(|v| (v - 175.0).abs() < 1e-3),
            "{:?}",
            &m.data[..3]
        );
        assert!(TorchScriptInterpolator::load(&dir.path().join("none.pt"), 1).is_err());
    }
}
