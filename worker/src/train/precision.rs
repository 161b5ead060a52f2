//! The fast path: bf16 compute with fp32 master weights, channels-last-3d activations, cuDNN autotuning.
//!
//! tch's `autocast` is CUDA-only, so the engine does by hand what `torch.autocast(bfloat16)` does: the fp32
//! master weights (kept in channels-last-3d memory for conv weights) are cast to bf16 for every forward
//! pass through an autograd-tracked cast, so gradients arrive in fp32 on the masters and the optimiser
//! updates fp32 values. Inputs are built directly in bf16 channels-last-3d memory (one copy on the device,
//! see [`crate::mersiamc3d::augment::DeviceSet::batch`]); oneDNN (CPU, AMX-BF16 where present) and cuDNN then keep that
//! layout through the conv/pool stack. Losses are computed in fp32 from the logits.

use tch::{Device, Kind, Tensor};

/// Compute precision and memory layout of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    /// bf16 compute (fp32 master weights).
    pub bf16: bool,
    /// Channels-last-3d memory for 5-D activations and conv weights.
    pub channels_last: bool,
    /// The training device.
    pub device: Device,
}

/// True when this CPU computes bf16 natively (AVX512-BF16; AMX-BF16 CPUs have it too).
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Precision {
    /// The fast path (`fast = true`: bf16 + channels-last-3d) or the plain fp32 contiguous path.
    pub fn new(fast: bool, device: Device) -> Self {
        Precision {
            bf16: fast,
            channels_last: fast,
            device,
        }
    }

    /// The precision a training run uses: the fast path where the device computes bf16 natively (CUDA,
    /// or a CPU with AVX512-BF16, which AMX CPUs also have), plain fp32 otherwise. Without native bf16,
    /// oneDNN emulates the bf16 convolutions and the "fast" path is the slow one: on an AMD EPYC with AVX2
    /// only (2026-12-01) the small SinC3D trained at 10 samples/s on it against 97 in fp32.
    pub fn for_training(fast: bool, device: Device) -> Self {
        let native = device != Device::Cpu || cpu_has_native_bf16();
        if fast && !native {
            tracing::info!("this CPU has no native bf16 (AVX512-BF16): training in fp32");
        }
        Self::new(fast && native, device)
    }

    /// dtype of activations and compute weights.
    pub fn kind(&self) -> Kind {
        if self.bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        }
    }

    /// A compute copy of a master weight: an autograd-tracked bf16 cast on the fast path (keeps the master's
    /// memory format), the master itself otherwise.
    pub fn compute(&self, master: &Tensor) -> Tensor {
        if self.bf16 {
            master.to_kind(Kind::BFloat16)
        } else {
            master.shallow_clone()
        }
    }

    /// The master layout of a freshly created parameter: channels-last-3d for 5-D conv weights on the fast path.
    pub fn master_layout(&self, t: Tensor) -> Tensor {
        if self.channels_last && t.dim() == 5 {
            channels_last_3d(&t)
        } else {
            t
        }
    }
}

/// The same logical `[N, C, D, H, W]` tensor stored channels-last (`[N, D, H, W, C]` memory): permute,
/// contiguous, permute back.
pub fn channels_last_3d(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 4, 1])
        .contiguous()
        .permute([0, 4, 1, 2, 3])
}

/// True when a 5-D tensor is stored channels-last-3d.
pub fn is_channels_last_3d(t: &Tensor) -> bool {
    let st = t.stride();
    st.len() == 5 && st[1] == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let t = Tensor::randn([2, 3, 4, 5, 6], (Kind::Float, Device::Cpu));
        let c = channels_last_3d(&t);
        assert!(c.equal(&t));
        assert!(is_channels_last_3d(&c) && !is_channels_last_3d(&t));
        assert_eq!(c.stride(), vec![360, 1, 90, 18, 3]);
        let p = Precision::new(true, Device::Cpu);
        let w = p.master_layout(t.shallow_clone()).set_requires_grad(true);
        let cw = p.compute(&w);
        assert_eq!(cw.kind(), Kind::BFloat16);
        assert!(is_channels_last_3d(&cw));
        // Gradients flow back to the fp32 master through the cast.
        let g = Tensor::run_backward(
            &[cw.to_kind(Kind::Float).sum(Kind::Float)],
            &[&w],
            false,
            false,
        )
        .remove(0);
        assert_eq!(g.kind(), Kind::Float);
        assert!(g.equal(&Tensor::ones_like(&w)));
    }

    #[test]
    fn fast_conv_stack_matches_fp32() {
        let x = Tensor::randn([2, 2, 6, 16, 16], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([8, 2, 3, 3, 3], (Kind::Float, Device::Cpu)) * 0.2;
        let plain = x
            .conv3d(&w, None::<Tensor>, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1)
            .max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false);
        let p = Precision::new(true, Device::Cpu);
        let xf = channels_last_3d(&x).to_kind(Kind::BFloat16);
        let wf = p.compute(&p.master_layout(w));
        let fast = xf
            .conv3d(&wf, None::<Tensor>, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1)
            .max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false);
        // oneDNN keeps channels-last through the stack only where it computes bf16 natively; its emulated
        // bf16 convolution (CPUs without AVX512-BF16) returns contiguous memory. The values agree either way.
        if cpu_has_native_bf16() {
            assert!(is_channels_last_3d(&fast), "{:?}", fast.stride());
        }
        let err = (fast.to_kind(Kind::Float) - &plain)
            .abs()
            .max()
            .double_value(&[]);
        let scale = plain.abs().max().double_value(&[]);
        assert!(err < 0.02 * scale, "{err} vs {scale}");
    }
}
