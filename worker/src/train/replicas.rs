//! The weights of one training stage on one device or on several replicas, and the split rule of a batch
//! over replicas (`train.devices_per_task`).
//!
//! A method's data-parallel step (`crate::mersiamc3d::data_parallel`) splits each batch with [`shards`],
//! back-propagates on every replica, and calls [`Replicas::reduce_and_step`]: the [`Collective`] sums the
//! gradients in replica order and every replica applies the same update, so the copies stay equal without
//! a broadcast.

use crate::error::WorkerError;
pub use crate::train::collective::{Collective, CpuCollective};
use crate::train::optim::ParamSet;
use crate::train::precision::Precision;
use mer_shared::train_config::OptimConfig;
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// The split rule: `len` samples over `n` replicas as contiguous ranges, the first `len mod n` one longer.
pub fn shards(len: usize, n: usize) -> Vec<Range<usize>> {
    let n = n.max(1);
    let (base, extra) = (len / n, len % n);
    let mut start = 0;
    (0..n)
        .map(|r| {
            let l = base + usize::from(r < extra);
            let range = start..start + l;
            start += l;
            range
        })
        .collect()
}

/// The replicas of one task's weights and the collective that joins their gradients.
pub struct Replicas {
    sets: Vec<ParamSet>,
    collective: Box<dyn Collective>,
}

impl Replicas {
    /// `sets` are the replicas' parameters (equal values; one per device), joined by `collective`.
    pub fn new(sets: Vec<ParamSet>, collective: Box<dyn Collective>) -> Result<Self, WorkerError> {
        if sets.is_empty() {
            return Err(WorkerError::Training("no replica".into()));
        }
        Ok(Replicas { sets, collective })
    }

    /// The replicas' parameters (replica 0 is what a checkpoint saves).
    pub fn sets(&self) -> &[ParamSet] {
        &self.sets
    }

    /// The replicas' parameters, for a step that runs forward and backward on each.
    pub fn sets_mut(&mut self) -> &mut [ParamSet] {
        &mut self.sets
    }

    /// Sums the gradients over replicas, then steps every replica with the same update.
    pub fn reduce_and_step(&mut self, lr: f64, o: &OptimConfig) -> Result<(), WorkerError> {
        // Frozen parameters have no gradient and are not updated: only the trained ones are summed.
        let grads: Vec<Vec<Tensor>> = self
            .sets
            .iter()
            .map(|s| {
                s.values()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| s.is_trainable(*i))
                    .map(|(_, v)| v.grad())
                    .collect()
            })
            .collect();
        self.collective.all_reduce_sum(&grads)?;
        for s in &mut self.sets {
            s.step(lr, o);
        }
        Ok(())
    }
}

/// A zero-weight loss over every parameter: the backward of an empty shard.
pub fn zero_loss(w: &[Tensor]) -> Tensor {
    w.iter()
        .map(|p| p.sum(Kind::Float) * 0.0)
        .fold(Tensor::zeros([], (Kind::Float, w[0].device())), |a, b| {
            a + b
        })
}

/// The collective joining replicas on `devices`: NCCL where they are all CUDA devices and the `cuda`
/// feature is built, else [`CpuCollective`] (copies through the first replica's device).
pub fn collective_for(devices: &[Device]) -> Result<Box<dyn Collective>, WorkerError> {
    let all_cuda = devices.iter().all(|d| matches!(d, Device::Cuda(_)));
    #[cfg(feature = "cuda")]
    if all_cuda {
        let ordinals: Vec<usize> = devices
            .iter()
            .filter_map(|d| match d {
                Device::Cuda(i) => Some(*i),
                _ => None,
            })
            .collect();
        return Ok(Box::new(crate::train::nccl::NcclCollective::new(
            &ordinals,
        )?));
    }
    if all_cuda {
        tracing::warn!(
            "data-parallel on CUDA without the `cuda` feature: gradients are summed through copies, not NCCL"
        );
    }
    Ok(Box::new(CpuCollective))
}

/// The weights one training stage updates: one set, or replicas on several devices joined by a
/// collective. Replica 0 (the primary) is what monitoring, testing and checkpoints read.
pub enum Weights {
    /// One device: a step runs forward, backward and the update on it directly.
    One(ParamSet),
    /// `devices_per_task > 1`.
    Many(Replicas),
}

impl Weights {
    /// `primary` (on `devices[0]`, already resumed and frozen as the stage wants) alone, or with copies on
    /// `devices[1..]` joined by [`collective_for`].
    pub fn new(
        primary: ParamSet,
        devices: &[Device],
        fast_path: bool,
    ) -> Result<Self, WorkerError> {
        if devices.len() <= 1 {
            return Ok(Weights::One(primary));
        }
        let mut sets = Vec::with_capacity(devices.len());
        for &d in &devices[1..] {
            sets.push(primary.replica(&Precision::for_training(fast_path, d)));
        }
        sets.insert(0, primary);
        Ok(Weights::Many(Replicas::new(
            sets,
            collective_for(devices)?,
        )?))
    }

    /// Replica 0.
    pub fn primary(&self) -> &ParamSet {
        match self {
            Weights::One(p) => p,
            Weights::Many(r) => &r.sets[0],
        }
    }

    /// Replica 0, for diagnostics that run a backward pass on it and clear it.
    pub fn primary_mut(&mut self) -> &mut ParamSet {
        match self {
            Weights::One(p) => p,
            Weights::Many(r) => &mut r.sets[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_rule() {
        let lens = |v: Vec<Range<usize>>| v.iter().map(|r| r.len()).collect::<Vec<_>>();
        assert_eq!(lens(shards(8, 3)), [3, 3, 2]);
        assert_eq!(lens(shards(2, 3)), [1, 1, 0]);
        assert_eq!(shards(7, 2), vec![0..4, 4..7]);
        assert_eq!(lens(shards(5, 1)), [5]);
    }
}
