//! Training devices: parsing `auto|cpu|cuda[:N]`, loading libtorch's CUDA library, threads and cuDNN.
//!
//! tch 0.24 has no `maybe_init_cuda`: the linker drops `libtorch_cuda.so` from the binary when no symbol of it
//! is referenced (`--as-needed`), and libtorch then reports no CUDA device. [`init_cuda`] therefore loads the
//! library by name (dlopen, `RTLD_GLOBAL`) before the first CUDA query; on a CPU-only torch it is a no-op.

use crate::error::WorkerError;
use mer_shared::device::DeviceSpec;
use std::sync::Once;
use tch::Device;

static CUDA_INIT: Once = Once::new();

/// Loads libtorch's CUDA library so that CUDA devices become visible (idempotent; call before any CUDA query).
pub fn init_cuda() {
    CUDA_INIT.call_once(|| {
        for name in [
            "libtorch_cuda.so",
            "libtorch_cuda_cu.so",
            "libtorch_cuda_cpp.so",
        ] {
            let Ok(c) = std::ffi::CString::new(name) else {
                continue;
            };
            // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally kept open for the
            // life of the process (the library registers CUDA kernels with libtorch on load).
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !h.is_null() {
                tracing::debug!(library = name, "loaded libtorch CUDA library");
            }
        }
    });
}

/// Parses a device spec ([`DeviceSpec`], the one parser) and resolves it on this machine: `auto` is the
/// first CUDA device if any, else the CPU; `cuda:N` must exist here.
pub fn parse_device(spec: &str) -> Result<Device, WorkerError> {
    let bad = |m: String| WorkerError::InvalidOption {
        option: "device".into(),
        message: m,
    };
    match spec.parse::<DeviceSpec>().map_err(bad)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => {
            init_cuda();
            Ok(if tch::Cuda::is_available() {
                Device::Cuda(0)
            } else {
                Device::Cpu
            })
        }
        DeviceSpec::Cuda(idx) => {
            init_cuda();
            let count = tch::Cuda::device_count();
            if (idx as i64) >= count {
                return Err(bad(format!(
                    "'{spec}': this machine has {count} CUDA device(s)"
                )));
            }
            Ok(Device::Cuda(idx))
        }
    }
}

/// The devices of a task training on `n` replicas ([`mer_shared::device::replica_specs`], the one rule),
/// resolved on this machine: `auto` takes the first `n` CUDA devices, or `n` CPU replicas where there is
/// no CUDA device; a CUDA device must exist here, and no CUDA device may appear twice (two replicas on one
/// GPU would only share it).
pub fn parse_devices(spec: &str, n: usize) -> Result<Vec<Device>, WorkerError> {
    let bad = |m: String| WorkerError::InvalidOption {
        option: "device".into(),
        message: m,
    };
    let specs = mer_shared::device::replica_specs(spec, n).map_err(bad)?;
    if n <= 1 {
        return Ok(vec![parse_device(spec)?]);
    }
    init_cuda();
    let count = if specs.iter().any(|d| *d != DeviceSpec::Cpu) {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    let mut out = Vec::with_capacity(specs.len());
    for (r, d) in specs.iter().enumerate() {
        out.push(match d {
            DeviceSpec::Cpu => Device::Cpu,
            DeviceSpec::Auto if count == 0 => Device::Cpu,
            DeviceSpec::Auto => Device::Cuda(r),
            DeviceSpec::Cuda(i) => Device::Cuda(*i),
        });
    }
    if out.contains(&Device::Cpu) && out.iter().any(|d| *d != Device::Cpu) {
        return Err(bad(format!(
            "'{spec}': the replicas of one task are all CPU or all CUDA devices (their precision must match)"
        )));
    }
    for (r, d) in out.iter().enumerate() {
        if let Device::Cuda(i) = d {
            if *i >= count {
                return Err(bad(format!(
                    "'{spec}': replica {r} needs cuda:{i}, this machine has {count} CUDA device(s)"
                )));
            }
            if out[..r].contains(d) {
                return Err(bad(format!("'{spec}': cuda:{i} is named twice")));
            }
        }
    }
    Ok(out)
}

/// The version of the cuDNN library libtorch loaded into this process (`cudnnGetVersion`, e.g. 91900 for
/// 9.19.0), or `None` when none is loaded (a CPU build, or before the first CUDA convolution).
pub fn cudnn_version() -> Option<u64> {
    type GetVersion = unsafe extern "C" fn() -> usize;
    for lib in ["libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"] {
        let name = std::ffi::CString::new(lib).ok()?;
        // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded; cudnnGetVersion has the
        // C signature `size_t cudnnGetVersion(void)`.
        unsafe {
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if h.is_null() {
                continue;
            }
            let f = libc::dlsym(h, c"cudnnGetVersion".as_ptr());
            if f.is_null() {
                continue;
            }
            let f: GetVersion = std::mem::transmute::<*mut libc::c_void, GetVersion>(f);
            return Some(f() as u64);
        }
    }
    None
}

/// The device's name as results record it: `cpu`, `cuda:0`...
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// Applies process-wide settings for a training run: intra-op threads (CPU) and cuDNN autotuning (CUDA fast
/// path). Thread count `None` keeps libtorch's default.
pub fn configure(device: Device, threads: Option<usize>, fast_path: bool) {
    if let Some(t) = threads {
        if t > 0 && tch::get_num_threads() != t as i32 {
            tch::set_num_threads(t as i32);
        }
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(fast_path);
    }
}

/// Memory in use on a CUDA device (total - free, as the CUDA runtime reports it: every process and
/// libtorch's cache included), for the bench report and the worker's heartbeats. `None` on CPU or when the
/// CUDA runtime is not loaded.
///
/// The query runs on a short-lived thread of its own: `cudaMemGetInfo` answers for the calling thread's
/// current device, and switching the caller's device back and forth could create a CUDA context on a GPU
/// this process does not use (CUDA 12+ creates the primary context in `cudaSetDevice`).
pub fn memory_in_use(device: Device) -> Option<u64> {
    let Device::Cuda(idx) = device else {
        return None;
    };
    let idx = i32::try_from(idx).ok()?;
    std::thread::scope(|s| s.spawn(move || query_device_memory(idx)).join().ok()?)
}

fn query_device_memory(idx: i32) -> Option<u64> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    for lib in ["libcudart.so.13", "libcudart.so.12", "libcudart.so"] {
        let name = std::ffi::CString::new(lib).ok()?;
        // SAFETY: RTLD_NOLOAD only returns a handle to a library libtorch already loaded; both symbols have
        // the C signatures declared above (cudaError_t is an int, 0 = success). The device set is this
        // thread's own and ends with it.
        unsafe {
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if h.is_null() {
                continue;
            }
            let (mem, set) = (
                libc::dlsym(h, c"cudaMemGetInfo".as_ptr()),
                libc::dlsym(h, c"cudaSetDevice".as_ptr()),
            );
            if mem.is_null() || set.is_null() {
                continue;
            }
            let mem: MemGetInfo = std::mem::transmute::<*mut libc::c_void, MemGetInfo>(mem);
            let set: SetDevice = std::mem::transmute::<*mut libc::c_void, SetDevice>(set);
            if set(idx) != 0 {
                return None;
            }
            let (mut free, mut total) = (0usize, 0usize);
            if mem(&mut free, &mut total) != 0 {
                return None;
            }
            return Some(total.saturating_sub(free) as u64);
        }
    }
    None
}

/// Peak resident memory of this process in bytes (`VmHWM` from /proc/self/status), `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_device_memory_on_cpu() {
        assert_eq!(memory_in_use(Device::Cpu), None);
    }

    #[test]
    fn parses_device_specs() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_devices("cpu", 3).unwrap(), vec![Device::Cpu; 3]);
        assert_eq!(parse_devices("cpu,cpu", 2).unwrap(), vec![Device::Cpu; 2]);
        if tch::Cuda::device_count() == 0 {
            assert_eq!(parse_devices("auto", 2).unwrap(), vec![Device::Cpu; 2]);
            let e = parse_devices("cuda:0,cuda:1", 2).unwrap_err().to_string();
            assert!(e.contains("replica 0 needs cuda:0"), "{e}");
        }
        let e = parse_devices("cpu,cpu", 3).unwrap_err().to_string();
        assert!(e.contains("names 2 devices for 3"), "{e}");
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        let e = parse_device("gpu").unwrap_err().to_string();
        assert!(e.contains("device") && e.contains("gpu"), "{e}");
        assert!(parse_device("cuda:x")
            .unwrap_err()
            .to_string()
            .contains("cuda:N"));
        // `auto` always resolves to something usable.
        let d = parse_device("auto").unwrap();
        assert!(d == Device::Cpu || d.is_cuda());
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
        assert!(peak_rss_bytes().unwrap() > 0);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_spec_fails_cleanly_without_a_gpu() {
        if tch::Cuda::device_count() == 0 {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("0 CUDA device"), "{e}");
        }
    }
}
