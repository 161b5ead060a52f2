//! The NCCL backend of [`Collective`] (feature `cuda`): one communicator per local GPU of a task
//! (`ncclCommInitAll`, single process), an in-place sum all-reduce on the data pointers of libtorch's
//! gradient tensors, through `cudarc`'s NCCL bindings. Nothing is linked at build time: `cudarc` loads
//! `libcuda` and `libnccl` when the collective is made (the torch wheel ships `libnccl.so.2`, which
//! `scripts/gpu_check.sh` puts on `LD_LIBRARY_PATH` as `libnccl.so`, the name `cudarc` looks for).
//!
//! **Stream ordering**, the hazard of mixing libtorch and cudarc: libtorch queues the backward pass on its
//! current stream of each device, NCCL runs on a stream of its own made here. Nothing orders the two
//! implicitly, so [`NcclCollective::all_reduce_sum`] makes it explicit and coarse: it waits for every
//! replica's device to finish libtorch's work (`torch.cuda.synchronize` per device) before it enqueues the
//! all-reduce, and waits for the NCCL streams to finish before it returns, so that the optimiser step
//! (libtorch again) reads the summed gradients. The cost is two host synchronisations per step; the
//! engine synchronises once per step anyway when it reads the loss.

use crate::error::WorkerError;
use crate::train::collective::Collective;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};
use parking_lot::Mutex;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The communicators of one task's replicas, in replica order.
struct Comms(Vec<sys::ncclComm_t>);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not overlap; the
// mutex around `Comms` serialises every use, and the handles are destroyed once, in `Drop`.
unsafe impl Send for Comms {}

/// NCCL all-reduce across the GPUs of one process (one replica per GPU).
pub struct NcclCollective {
    ordinals: Vec<usize>,
    comms: Mutex<Comms>,
    /// One NCCL stream per replica, on its device (kept alive with their contexts).
    streams: Vec<Arc<CudaStream>>,
}

impl NcclCollective {
    /// Communicators for the CUDA devices `ordinals` (replica `r` on `ordinals[r]`, each once).
    pub fn new(ordinals: &[usize]) -> Result<Self, WorkerError> {
        let err = |m: String| WorkerError::Training(format!("NCCL: {m}"));
        // SAFETY: only probes whether the shared libraries can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(err(
                "libcuda (the NVIDIA driver library) is not loadable".into()
            ));
        }
        // SAFETY: as above.
        if !unsafe { sys::is_culib_present() } {
            return Err(err(
                "libnccl.so is not on the library path (the torch wheel ships nvidia/nccl/lib/libnccl.so.2: link it as libnccl.so in a folder on LD_LIBRARY_PATH, as scripts/gpu_check.sh does)".into(),
            ));
        }
        for (r, o) in ordinals.iter().enumerate() {
            if ordinals[..r].contains(o) {
                return Err(err(format!("cuda:{o} is named twice")));
            }
        }
        let streams = ordinals
            .iter()
            .map(|&o| {
                CudaContext::new(o)
                    .and_then(|c| c.new_stream())
                    .map_err(|e| err(format!("cuda:{o}: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let devlist: Vec<i32> = ordinals.iter().map(|&o| o as i32).collect();
        let mut comms = vec![std::ptr::null_mut(); ordinals.len()];
        // SAFETY: `comms` has room for one handle per device of `devlist`.
        unsafe {
            result::comm_init_all(comms.as_mut_ptr(), devlist.len() as i32, devlist.as_ptr())
        }
        .map_err(|e| err(format!("ncclCommInitAll over {ordinals:?}: {e:?}")))?;
        tracing::info!(devices = ?ordinals, version = ?result::get_nccl_version().ok(), "NCCL communicators");
        Ok(NcclCollective {
            ordinals: ordinals.to_vec(),
            comms: Mutex::new(Comms(comms)),
            streams,
        })
    }

    /// The NCCL version the loaded library reports (`22809` for 2.28.9), if it loads.
    pub fn version() -> Option<i32> {
        // SAFETY: only probes whether the shared library can be loaded.
        if !unsafe { sys::is_culib_present() } {
            return None;
        }
        result::get_nccl_version().ok()
    }
}

fn nccl_kind(k: Kind) -> Option<sys::ncclDataType_t> {
    match k {
        Kind::Float => Some(sys::ncclDataType_t::ncclFloat32),
        Kind::Double => Some(sys::ncclDataType_t::ncclFloat64),
        Kind::Half => Some(sys::ncclDataType_t::ncclFloat16),
        Kind::BFloat16 => Some(sys::ncclDataType_t::ncclBfloat16),
        _ => None,
    }
}

impl Collective for NcclCollective {
    fn name(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum(&self, grads: &[Vec<Tensor>]) -> Result<(), WorkerError> {
        let err = |m: String| WorkerError::Training(format!("NCCL all-reduce: {m}"));
        if grads.len() != self.ordinals.len() {
            return Err(err(format!(
                "{} replicas for {} communicators",
                grads.len(),
                self.ordinals.len()
            )));
        }
        let Some(first) = grads.first() else {
            return Ok(());
        };
        for (r, g) in grads.iter().enumerate() {
            if g.len() != first.len() {
                return Err(err(
                    "the replicas hold different numbers of gradients".into()
                ));
            }
            for (j, t) in g.iter().enumerate() {
                let want = Device::Cuda(self.ordinals[r]);
                if !t.defined() || t.device() != want || !t.is_contiguous() {
                    return Err(err(format!(
                        "gradient {j} of replica {r} is not a contiguous tensor on {want:?}"
                    )));
                }
                if t.kind() != first[j].kind() || t.numel() != first[j].numel() {
                    return Err(err(format!("gradient {j} differs between replicas")));
                }
            }
        }
        // libtorch's backward on every device has finished before NCCL reads the gradients.
        for &o in &self.ordinals {
            tch::Cuda::synchronize(o as i64);
        }
        let comms = self.comms.lock();
        result::group_start().map_err(|e| err(format!("{e:?}")))?;
        let enqueue = || -> Result<(), WorkerError> {
            for j in 0..first.len() {
                let kind = nccl_kind(first[j].kind())
                    .ok_or_else(|| err(format!("gradient {j} has dtype {:?}", first[j].kind())))?;
                for (r, g) in grads.iter().enumerate() {
                    let ptr = g[j].data_ptr();
                    // SAFETY: `ptr` is the storage of a contiguous gradient of `numel` elements of `kind`
                    // on device `ordinals[r]` (checked above), which libtorch keeps alive for this call;
                    // `comms.0[r]` and `streams[r]` belong to that device; in place (send == receive) is
                    // allowed by NCCL.
                    unsafe {
                        result::all_reduce(
                            ptr.cast_const(),
                            ptr,
                            g[j].numel(),
                            kind,
                            sys::ncclRedOp_t::ncclSum,
                            comms.0[r],
                            self.streams[r].cu_stream() as sys::cudaStream_t,
                        )
                    }
                    .map_err(|e| err(format!("gradient {j}, replica {r}: {e:?}")))?;
                }
            }
            Ok(())
        };
        let queued = enqueue();
        // The group is closed whatever happened inside it.
        let closed = result::group_end().map_err(|e| err(format!("{e:?}")));
        queued?;
        closed?;
        // The sums are complete before libtorch's optimiser step reads them.
        for (s, o) in self.streams.iter().zip(&self.ordinals) {
            s.synchronize()
                .map_err(|e| err(format!("cuda:{o}: {e:?}")))?;
        }
        Ok(())
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        for &c in &self.comms.get_mut().0 {
            // SAFETY: each handle came from ncclCommInitAll and is destroyed once; nothing uses it after.
            if let Err(e) = unsafe { result::comm_destroy(c) } {
                tracing::warn!("ncclCommDestroy: {e:?}");
            }
        }
    }
}
