//! STSTNet (Liong, Gan, See, Khor, Huang: "Shallow Triple Stream Three-dimensional CNN (STSTNet) for
//! micro-expression recognition", IEEE FG 2019), as the authors' PyTorch code builds it
//! (github.com/christy1206/STSTNet, `main.py`; the same network is `meb/models/me_networks.py::STSTNet` in
//! github.com/tvaranka/meb).
//!
//! Input `[B, 3, S, S]` (u, v, optical strain; S = 28 in the paper). Three parallel streams, each
//! conv2d(3 -> 3 | 5 | 8 channels, 3x3, stride 1, padding 2) -> ReLU -> BatchNorm -> max-pool(3x3, stride 3,
//! padding 1) -> dropout; the streams are concatenated to 16 channels, average-pooled 2x2 (stride 2),
//! flattened and mapped to the classes by one linear layer. At S = 28 the sizes are 28 -> 30 (conv) -> 10
//! (max-pool) -> 5 (avg-pool), so the linear layer sees 16 x 5 x 5 = 400 features.
//!
//! The authors' layer order (ReLU before BatchNorm) is kept. Dropout is element-wise (`nn.Dropout`); it is
//! applied once to the concatenation, which is the same as one independent mask per stream.
//!
//! Trainable parameters (3 classes): convs 84 + 140 + 224, BatchNorm 2 x 16 = 32, linear 400 x 3 + 3 =
//! 1,203; 1,683 in all (what `torchsummary` reports for the authors' model: the BatchNorm running means and
//! variances are buffers, not parameters).

use super::layers::check_common;
use super::layers::{dropout, uniform};
use crate::error::WorkerError;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Output channels of the three streams (authors' code).
pub const STREAM_WIDTHS: [i64; 3] = [3, 5, 8];
/// Input channels: u, v, optical strain.
pub const IN_CHANNELS: i64 = 3;
/// BatchNorm momentum and epsilon (PyTorch's defaults, as the authors' `nn.BatchNorm2d` uses them).
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// A built STSTNet: parameters (plain fp32 tensors requiring grad) and BatchNorm running statistics.
pub struct Ststnet {
    size: i64,
    classes: i64,
    dropout: f64,
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Per stream: (running mean, running var).
    running: Vec<(Tensor, Tensor)>,
}

impl Ststnet {
    /// Spatial side after the avg-pool for an input side `size` (28 -> 5).
    pub fn final_side(size: i64) -> i64 {
        let conv = size + 2; // 3x3, padding 2
        let pool = (conv + 2 - 3) / 3 + 1; // 3x3, stride 3, padding 1
        pool / 2 // 2x2, stride 2
    }

    /// Features that feed the linear layer (28 -> 400).
    pub fn flat_features(size: i64) -> i64 {
        let s = Self::final_side(size);
        16 * s * s
    }

    /// Builds the network for `[B, 3, size, size]` inputs, drawing every parameter from `rng` in a fixed
    /// order (PyTorch's default bounds: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for conv and linear weights and
    /// biases; BatchNorm weight 1, bias 0, running mean 0, running var 1). Same seed, same network.
    pub fn new(
        size: usize,
        classes: usize,
        dropout: f64,
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> Result<Self, WorkerError> {
        let size = size as i64;
        if size < 1 || Self::final_side(size) < 1 {
            return Err(WorkerError::InvalidOption {
                option: "size".into(),
                message: format!("STSTNet needs an input side of at least 2, got {size}"),
            });
        }
        check_common(classes, dropout)?;
        let mut names = Vec::new();
        let mut params = Vec::new();
        let mut running = Vec::new();
        for (i, &w) in STREAM_WIDTHS.iter().enumerate() {
            let fan_in = IN_CHANNELS * 9;
            let b = 1.0 / (fan_in as f64).sqrt();
            names.push(format!("conv{}.weight", i + 1));
            params.push(uniform(&[w, IN_CHANNELS, 3, 3], b, rng, device));
            names.push(format!("conv{}.bias", i + 1));
            params.push(uniform(&[w], b, rng, device));
            names.push(format!("bn{}.weight", i + 1));
            params.push(Tensor::ones([w], (Kind::Float, device)));
            names.push(format!("bn{}.bias", i + 1));
            params.push(Tensor::zeros([w], (Kind::Float, device)));
            running.push((
                Tensor::zeros([w], (Kind::Float, device)),
                Tensor::ones([w], (Kind::Float, device)),
            ));
        }
        let f = Self::flat_features(size);
        let b = 1.0 / (f as f64).sqrt();
        names.push("fc.weight".into());
        params.push(uniform(&[classes as i64, f], b, rng, device));
        names.push("fc.bias".into());
        params.push(uniform(&[classes as i64], b, rng, device));
        let params = params
            .into_iter()
            .map(|p| p.set_requires_grad(true))
            .collect();
        Ok(Ststnet {
            size,
            classes: classes as i64,
            dropout,
            names,
            params,
            running,
        })
    }

    /// The trainable parameters, in a fixed order (see [`Ststnet::param_names`]).
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// Names of [`Ststnet::parameters`] (`conv1.weight`, `bn1.bias`, `fc.weight`...).
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// The BatchNorm running statistics per stream, `(mean, var)`.
    pub fn running_stats(&self) -> &[(Tensor, Tensor)] {
        &self.running
    }

    /// Logits `[B, classes]` for `x` `[B, 3, S, S]`. `train`: BatchNorm uses (and updates the running
    /// statistics from) the batch, dropout masks are drawn from `dropout_rng`; otherwise running statistics
    /// and no dropout (`dropout_rng` untouched).
    pub fn forward_t(&self, x: &Tensor, train: bool, dropout_rng: &mut ChaCha8Rng) -> Tensor {
        self.run(x, train, dropout_rng, None)
    }

    /// Runs [`Ststnet::forward_t`] and returns each layer's `(name, output shape)` (for tests).
    pub fn trace(
        &self,
        x: &Tensor,
        train: bool,
        dropout_rng: &mut ChaCha8Rng,
    ) -> Vec<(String, Vec<i64>)> {
        let mut t = Vec::new();
        let _ = self.run(x, train, dropout_rng, Some(&mut t));
        t
    }

    /// Expected shapes of [`Ststnet::trace`] for a batch of `batch`, from the geometry.
    pub fn expected_shapes(&self, batch: i64) -> Vec<(String, Vec<i64>)> {
        let c = self.size + 2;
        let p = (c + 2 - 3) / 3 + 1;
        let a = Self::final_side(self.size);
        let mut v = Vec::new();
        for (i, &w) in STREAM_WIDTHS.iter().enumerate() {
            v.push((format!("conv{}", i + 1), vec![batch, w, c, c]));
            v.push((format!("pool{}", i + 1), vec![batch, w, p, p]));
        }
        v.push(("concat".into(), vec![batch, 16, p, p]));
        v.push(("avgpool".into(), vec![batch, 16, a, a]));
        v.push(("flatten".into(), vec![batch, 16 * a * a]));
        v.push(("logits".into(), vec![batch, self.classes]));
        v
    }

    fn run(
        &self,
        x: &Tensor,
        train: bool,
        rng: &mut ChaCha8Rng,
        mut trace: Option<&mut Vec<(String, Vec<i64>)>>,
    ) -> Tensor {
        let mut log = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.size()));
            }
        };
        let mut streams = Vec::with_capacity(3);
        for i in 0..STREAM_WIDTHS.len() {
            let p = &self.params[4 * i..4 * i + 4];
            let (rm, rv) = &self.running[i];
            let h = x.conv2d(&p[0], Some(&p[1]), [1, 1], [2, 2], [1, 1], 1);
            log(format!("conv{}", i + 1), &h);
            let h = h.relu().batch_norm(
                Some(&p[2]),
                Some(&p[3]),
                Some(rm),
                Some(rv),
                train,
                BN_MOMENTUM,
                BN_EPS,
                true,
            );
            let h = h.max_pool2d([3, 3], [3, 3], [1, 1], [1, 1], false);
            log(format!("pool{}", i + 1), &h);
            streams.push(h);
        }
        let h = Tensor::cat(&streams, 1);
        log("concat".into(), &h);
        let h = if train {
            dropout(&h, self.dropout, rng)
        } else {
            h
        };
        let h = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None);
        log("avgpool".into(), &h);
        let h = h.flatten(1, -1);
        log("flatten".into(), &h);
        let n = self.params.len();
        let z = h.linear(&self.params[n - 2], Some(&self.params[n - 1]));
        log("logits".into(), &z);
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn net(seed: u64, classes: usize) -> Ststnet {
        Ststnet::new(
            28,
            classes,
            0.5,
            &mut ChaCha8Rng::seed_from_u64(seed),
            Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn ststnet_layer_shapes_match_the_authors_model() {
        let m = net(1, 3);
        let exp = m.expected_shapes(2);
        let want: Vec<Vec<i64>> = vec![
            vec![2, 3, 30, 30],
            vec![2, 3, 10, 10],
            vec![2, 5, 30, 30],
            vec![2, 5, 10, 10],
            vec![2, 8, 30, 30],
            vec![2, 8, 10, 10],
            vec![2, 16, 10, 10],
            vec![2, 16, 5, 5],
            vec![2, 400],
            vec![2, 3],
        ];
        assert_eq!(exp.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), want);
        let x = Tensor::rand([2, 3, 28, 28], (Kind::Float, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let tr = tch::no_grad(|| m.trace(&x, true, &mut rng));
        assert_eq!(tr, exp);
        let tr = tch::no_grad(|| m.trace(&x, false, &mut rng));
        assert_eq!(tr, exp);
        assert_eq!(Ststnet::flat_features(28), 400);
    }

    #[test]
    fn ststnet_parameter_count() {
        let m = net(1, 3);
        let n: i64 = m.parameters().iter().map(|p| p.numel() as i64).sum();
        // 3 convs (3*27+3, 5*27+5, 8*27+8) + BatchNorm (2*16) + linear (400*3+3).
        assert_eq!(n, 84 + 140 + 224 + 32 + 1203);
        assert_eq!(n, 1683);
        assert_eq!(m.param_names().len(), m.parameters().len());
        assert_eq!(m.param_names()[0], "conv1.weight");
    }

    #[test]
    fn ststnet_init_is_seeded_and_within_pytorch_bounds() {
        let (a, b, c) = (net(5, 3), net(5, 3), net(6, 3));
        for (x, y) in a.parameters().iter().zip(b.parameters()) {
            assert!(x.equal(y));
        }
        assert!(!a.parameters()[0].equal(&c.parameters()[0]));
        let bound = 1.0 / 27f64.sqrt();
        assert!(a.parameters()[0].abs().max().double_value(&[]) <= bound);
        let fc_bound = 1.0 / 400f64.sqrt();
        assert!(a.parameters()[12].abs().max().double_value(&[]) <= fc_bound);
        assert!(a.parameters()[2].equal(&Tensor::ones([3], (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn ststnet_batchnorm_modes() {
        let m = net(2, 3);
        let x = Tensor::rand([4, 3, 28, 28], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let before = m.running_stats()[0].0.copy();
        // Eval leaves the running statistics alone and is deterministic (no dropout).
        let e1 = tch::no_grad(|| m.forward_t(&x, false, &mut rng));
        let e2 = tch::no_grad(|| m.forward_t(&x, false, &mut rng));
        assert!(e1.equal(&e2));
        assert!(m.running_stats()[0].0.equal(&before));
        // Train mode updates them.
        let _ = tch::no_grad(|| m.forward_t(&x, true, &mut rng));
        assert!(!m.running_stats()[0].0.equal(&before));
        // Bad options are refused.
        assert!(Ststnet::new(28, 1, 0.5, &mut rng, Device::Cpu).is_err());
        assert!(Ststnet::new(28, 3, 1.0, &mut rng, Device::Cpu).is_err());
        assert!(Ststnet::new(0, 3, 0.5, &mut rng, Device::Cpu).is_err());
    }
}
