//! The gradient all-reduce of data-parallel training behind one small interface ([`Collective`]), and its
//! CPU backend. The NCCL backend (`crate::train::nccl`, feature `cuda`) implements the same trait;
//! `crate::mersiamc3d::data_parallel::collective_for` picks one for a task's devices.

use crate::error::WorkerError;
use tch::Tensor;

/// A gradient all-reduce across replicas.
pub trait Collective: Send + Sync {
    /// The backend's name (for logs and results).
    fn name(&self) -> &'static str;
    /// Replaces gradient `j` of every replica by the sum over replicas of gradient `j` (`grads[r][j]`);
    /// every replica has the same number of gradients, of equal shapes.
    fn all_reduce_sum(&self, grads: &[Vec<Tensor>]) -> Result<(), WorkerError>;
}

/// The CPU backend: sums in replica order on the first replica's device and copies the sum back.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuCollective;

impl Collective for CpuCollective {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn all_reduce_sum(&self, grads: &[Vec<Tensor>]) -> Result<(), WorkerError> {
        let Some(first) = grads.first() else {
            return Ok(());
        };
        if grads.iter().any(|g| g.len() != first.len()) {
            return Err(WorkerError::Training(
                "all-reduce: the replicas hold different numbers of gradients".into(),
            ));
        }
        if grads.iter().flatten().any(|g| !g.defined()) {
            return Err(WorkerError::Training(
                "all-reduce: a trained parameter has no gradient".into(),
            ));
        }
        tch::no_grad(|| {
            for j in 0..first.len() {
                let dev = first[j].device();
                let mut sum = first[j].copy();
                for g in &grads[1..] {
                    sum += g[j].to_device(dev);
                }
                for g in grads {
                    let mut t = g[j].shallow_clone();
                    t.copy_(&sum);
                }
            }
        });
        Ok(())
    }
}
