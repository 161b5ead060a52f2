//! OFF-ApexNet (Gan, Liong, Yau, Huang, Tan: "OFF-ApexNet on micro-expression recognition system", Signal
//! Processing: Image Communication 74 (2019) 129-139; arXiv 1805.08699).
//!
//! Input `[B, C >= 2, S, S]`; channel 0 is the horizontal flow u, channel 1 the vertical flow v (S = 28 in
//! the paper); further channels (the strain the prepared file also holds) are ignored. Two identical,
//! separately weighted streams, one per flow component, each LeNet-like:
//! conv2d(1 -> 6, 5x5, stride 1, "same" padding 2) -> ReLU -> max-pool 2x2 (stride 2) ->
//! conv2d(6 -> 16, 5x5, padding 2) -> ReLU -> max-pool 2x2 -> flatten (28 -> 14 -> 7: 16 x 7 x 7 = 784).
//! The two 784-vectors are concatenated (1,568), then dense(`dense`) -> ReLU -> dropout -> dense(`dense`) ->
//! ReLU -> dropout -> linear to the classes (softmax in the loss).
//!
//! Sources. The paper's body was not reachable from here; what we take from it is its abstract (arXiv
//! 1805.08699: horizontal and vertical onset->apex flow fed to a CNN) and the description the brief gives:
//! two streams (u, v at 28x28), each two conv + max-pool stages with 6 and 16 filters, features
//! concatenated, two fully connected layers, softmax. The kernel size (5x5), "same" padding, 2x2 pools,
//! 1,024-unit dense layers and dropout 0.5 after each hidden dense layer follow the public PyTorch
//! re-implementation in the Off-TANet authors' repository (README "Off-TANet: A lightweight neural
//! micro-expression recognizer with optical flow features and integrated attention mechanism"; its
//! `class OffApexNet` has two `CNN` streams and a `784*2 -> 1024 -> 1024 -> 3` head). That repository's
//! table lists Off-ApexNet at 2.66 M parameters, which this network has (2,664,475 at 3 classes, see the
//! test). The re-implementation has no activation after its convolutions; we put a ReLU after each, as a
//! LeNet-style CNN has and as MEB's `OffApexNet` (github.com/tvaranka/meb, `meb/models/me_networks.py`)
//! does. MEB's variant is a single 2-channel stream with 3x3 kernels and 6/16 filters, which departs from
//! the paper's two streams, so we follow it only in the ReLUs.

use super::layers::check_common;
use super::layers::{dropout, uniform};
use crate::error::WorkerError;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Filters of the two conv layers of each stream.
pub const CONV_WIDTHS: [i64; 2] = [6, 16];
/// Kernel side of both conv layers.
pub const KERNEL: i64 = 5;

/// A built OFF-ApexNet: parameters as plain fp32 tensors requiring grad.
pub struct OffApexNet {
    size: i64,
    classes: i64,
    dense: i64,
    dropout: f64,
    names: Vec<String>,
    params: Vec<Tensor>,
}

impl OffApexNet {
    /// Features of one stream after the second pool for input side `size` (28 -> 784).
    pub fn stream_features(size: i64) -> i64 {
        let s = size / 2 / 2;
        CONV_WIDTHS[1] * s * s
    }

    /// Builds the network for `[B, >=2, size, size]` inputs with `dense` units in each hidden dense layer,
    /// drawing every parameter from `rng` in a fixed order (PyTorch's default bounds:
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases). Same seed, same network.
    pub fn new(
        size: usize,
        classes: usize,
        dense: i64,
        dropout: f64,
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> Result<Self, WorkerError> {
        let size = size as i64;
        if size < 4 {
            return Err(WorkerError::InvalidOption {
                option: "size".into(),
                message: format!("OFF-ApexNet needs an input side of at least 4, got {size}"),
            });
        }
        if dense < 1 {
            return Err(WorkerError::InvalidOption {
                option: "dense".into(),
                message: format!("must be at least 1, got {dense}"),
            });
        }
        check_common(classes, dropout)?;
        let mut names = Vec::new();
        let mut params = Vec::new();
        let mut push = |name: String, shape: &[i64], fan_in: i64, rng: &mut ChaCha8Rng| {
            names.push(name);
            params.push(uniform(shape, 1.0 / (fan_in as f64).sqrt(), rng, device));
        };
        for stream in ["u", "v"] {
            let mut cin = 1;
            for (i, &w) in CONV_WIDTHS.iter().enumerate() {
                let fan_in = cin * KERNEL * KERNEL;
                push(
                    format!("{stream}.conv{}.weight", i + 1),
                    &[w, cin, KERNEL, KERNEL],
                    fan_in,
                    rng,
                );
                push(format!("{stream}.conv{}.bias", i + 1), &[w], fan_in, rng);
                cin = w;
            }
        }
        let f = 2 * Self::stream_features(size);
        push("fc1.weight".into(), &[dense, f], f, rng);
        push("fc1.bias".into(), &[dense], f, rng);
        push("fc2.weight".into(), &[dense, dense], dense, rng);
        push("fc2.bias".into(), &[dense], dense, rng);
        push("out.weight".into(), &[classes as i64, dense], dense, rng);
        push("out.bias".into(), &[classes as i64], dense, rng);
        let params = params
            .into_iter()
            .map(|p| p.set_requires_grad(true))
            .collect();
        Ok(OffApexNet {
            size,
            classes: classes as i64,
            dense,
            dropout,
            names,
            params,
        })
    }

    /// The trainable parameters, in a fixed order (see [`OffApexNet::param_names`]).
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// Names of [`OffApexNet::parameters`] (`u.conv1.weight`, ..., `fc1.weight`, ..., `out.bias`).
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// Logits `[B, classes]` for `x` `[B, C >= 2, S, S]` (channels 0, 1 = u, v). `train`: dropout masks
    /// from `dropout_rng`; otherwise no dropout (`dropout_rng` untouched).
    pub fn forward_t(&self, x: &Tensor, train: bool, dropout_rng: &mut ChaCha8Rng) -> Tensor {
        self.run(x, train, dropout_rng, None)
    }

    /// Runs [`OffApexNet::forward_t`] and returns each layer's `(name, output shape)` (for tests).
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

    /// Expected shapes of [`OffApexNet::trace`] for a batch of `batch`, from the geometry.
    pub fn expected_shapes(&self, batch: i64) -> Vec<(String, Vec<i64>)> {
        let (s1, s2) = (self.size / 2, self.size / 4);
        let mut v = Vec::new();
        for st in ["u", "v"] {
            v.push((format!("{st}.conv1"), vec![batch, 6, self.size, self.size]));
            v.push((format!("{st}.pool1"), vec![batch, 6, s1, s1]));
            v.push((format!("{st}.conv2"), vec![batch, 16, s1, s1]));
            v.push((format!("{st}.pool2"), vec![batch, 16, s2, s2]));
            v.push((format!("{st}.flatten"), vec![batch, 16 * s2 * s2]));
        }
        v.push(("concat".into(), vec![batch, 32 * s2 * s2]));
        v.push(("fc1".into(), vec![batch, self.dense]));
        v.push(("fc2".into(), vec![batch, self.dense]));
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
        let p = &self.params;
        let mut feats = Vec::with_capacity(2);
        for (s, st) in ["u", "v"].iter().enumerate() {
            let q = &p[4 * s..4 * s + 4];
            let h = x.narrow(1, s as i64, 1);
            let h = h.conv2d(&q[0], Some(&q[1]), [1, 1], [2, 2], [1, 1], 1);
            log(format!("{st}.conv1"), &h);
            let h = h.relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            log(format!("{st}.pool1"), &h);
            let h = h.conv2d(&q[2], Some(&q[3]), [1, 1], [2, 2], [1, 1], 1);
            log(format!("{st}.conv2"), &h);
            let h = h.relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            log(format!("{st}.pool2"), &h);
            let h = h.flatten(1, -1);
            log(format!("{st}.flatten"), &h);
            feats.push(h);
        }
        let h = Tensor::cat(&feats, 1);
        log("concat".into(), &h);
        let drop = |h: Tensor, rng: &mut ChaCha8Rng| {
            if train {
                dropout(&h, self.dropout, rng)
            } else {
                h
            }
        };
        let h = h.linear(&p[8], Some(&p[9])).relu();
        log("fc1".into(), &h);
        let h = drop(h, rng);
        let h = h.linear(&p[10], Some(&p[11])).relu();
        log("fc2".into(), &h);
        let h = drop(h, rng);
        let z = h.linear(&p[12], Some(&p[13]));
        log("logits".into(), &z);
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tch::Kind;

    fn net(seed: u64, dense: i64) -> OffApexNet {
        OffApexNet::new(
            28,
            3,
            dense,
            0.5,
            &mut ChaCha8Rng::seed_from_u64(seed),
            Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn offapexnet_layer_shapes_match_the_paper() {
        let m = net(1, 1024);
        let exp = m.expected_shapes(2);
        let want: Vec<Vec<i64>> = vec![
            vec![2, 6, 28, 28],
            vec![2, 6, 14, 14],
            vec![2, 16, 14, 14],
            vec![2, 16, 7, 7],
            vec![2, 784],
            vec![2, 6, 28, 28],
            vec![2, 6, 14, 14],
            vec![2, 16, 14, 14],
            vec![2, 16, 7, 7],
            vec![2, 784],
            vec![2, 1568],
            vec![2, 1024],
            vec![2, 1024],
            vec![2, 3],
        ];
        assert_eq!(exp.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), want);
        // Reads channels 0..2 of the 3-channel apex-flow tensor.
        let x = Tensor::rand([2, 3, 28, 28], (Kind::Float, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        assert_eq!(tch::no_grad(|| m.trace(&x, true, &mut rng)), exp);
        assert_eq!(tch::no_grad(|| m.trace(&x, false, &mut rng)), exp);
    }

    #[test]
    fn offapexnet_parameter_count() {
        let m = net(1, 1024);
        let n: i64 = m.parameters().iter().map(|p| p.numel() as i64).sum();
        // Per stream: conv1 6*25+6 = 156, conv2 16*150+16 = 2,416; fc1 1568*1024+1024; fc2 1024*1024+1024;
        // out 1024*3+3. The Off-TANet repository's table lists Off-ApexNet at 2.66 M parameters.
        let want = 2 * (156 + 2416) + (1568 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 3 + 3);
        assert_eq!(n, want);
        assert_eq!(n, 2_664_475);
        assert_eq!(m.param_names().len(), 14);
    }

    #[test]
    fn offapexnet_ignores_the_strain_channel_and_is_seeded() {
        let m = net(3, 16);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Tensor::rand([2, 3, 28, 28], (Kind::Float, Device::Cpu));
        let x2 = Tensor::cat(
            &[
                x.narrow(1, 0, 2),
                Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu)),
            ],
            1,
        );
        let (a, b) = tch::no_grad(|| {
            (
                m.forward_t(&x, false, &mut rng),
                m.forward_t(&x2, false, &mut rng),
            )
        });
        assert!(a.equal(&b));
        let (p, q, r) = (net(3, 16), net(3, 16), net(4, 16));
        assert!(p
            .parameters()
            .iter()
            .zip(q.parameters())
            .all(|(a, b)| a.equal(b)));
        assert!(!p.parameters()[0].equal(&r.parameters()[0]));
        assert!(OffApexNet::new(28, 3, 0, 0.5, &mut rng, Device::Cpu).is_err());
        assert!(OffApexNet::new(3, 3, 8, 0.5, &mut rng, Device::Cpu).is_err());
    }
}
