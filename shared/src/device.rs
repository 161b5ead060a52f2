//! The training device as specs and command lines write it (`auto`, `cpu`, `cuda`, `cuda:N`): parsed
//! here and nowhere else, so that a spec the coordinator accepts is a device string every worker
//! understands. Resolving it to a libtorch device (is CUDA there, how many GPUs) is the worker's job
//! (`mer_worker::train::device::parse_device`).

use std::fmt;
use std::str::FromStr;

/// A requested training device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The first CUDA device if the worker has one, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this index (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    /// Case-insensitive, surrounding blanks ignored; the error quotes the input and lists what is valid.
    fn from_str(spec: &str) -> Result<Self, String> {
        let s = spec.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| format!("'{spec}': the device index is too large")),
                Some(_) => Err(format!("'{spec}': expected cuda:N with N a device index")),
                None => Err(format!("'{spec}': expected auto, cpu, cuda or cuda:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The devices of a task that trains on `n` replicas (`train.devices_per_task`), from its device string:
/// the one rule for it. A comma-separated list names each replica's device and must have `n` entries;
/// a single device stands for `n`: `cpu` is `n` CPU replicas, `cuda:k` is `cuda:k` .. `cuda:k+n-1`, `auto`
/// is `n` times `auto` (the worker takes the first `n` GPUs, or `n` CPU replicas on a machine without
/// one). With `n = 1` it is exactly [`DeviceSpec`]'s parse.
pub fn replica_specs(spec: &str, n: usize) -> Result<Vec<DeviceSpec>, String> {
    let n = n.max(1);
    if spec.contains(',') {
        let list = spec
            .split(',')
            .map(str::parse::<DeviceSpec>)
            .collect::<Result<Vec<_>, _>>()?;
        if list.len() != n {
            return Err(format!(
                "'{spec}' names {} devices for {n} replica(s) (devices_per_task = {n})",
                list.len()
            ));
        }
        return Ok(list);
    }
    let one: DeviceSpec = spec.parse()?;
    Ok((0..n)
        .map(|r| match one {
            DeviceSpec::Cuda(k) => DeviceSpec::Cuda(k + r),
            other => other,
        })
        .collect())
}

/// How a list of replica devices is written (`cuda:0,cuda:1`); what [`replica_specs`] reads back.
pub fn join_devices<T: fmt::Display>(devices: &[T]) -> String {
    devices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_devices_from_a_list_or_one_device() {
        use DeviceSpec::*;
        assert_eq!(replica_specs("cpu", 1), Ok(vec![Cpu]));
        assert_eq!(replica_specs("cpu", 3), Ok(vec![Cpu, Cpu, Cpu]));
        assert_eq!(replica_specs("cuda:2", 2), Ok(vec![Cuda(2), Cuda(3)]));
        assert_eq!(replica_specs("auto", 2), Ok(vec![Auto, Auto]));
        assert_eq!(
            replica_specs("cuda:1,cuda:0", 2),
            Ok(vec![Cuda(1), Cuda(0)])
        );
        assert_eq!(replica_specs("cpu,cpu", 2), Ok(vec![Cpu, Cpu]));
        let e = replica_specs("cuda:0,cuda:1", 3).unwrap_err();
        assert!(e.contains("names 2 devices for 3"), "{e}");
        assert!(replica_specs("cuda:0,gpu", 2)
            .unwrap_err()
            .contains("'gpu'"));
        assert_eq!(
            join_devices(&[Cuda(0), Cuda(1)]),
            "cuda:0,cuda:1".to_string()
        );
        assert_eq!(
            replica_specs(&join_devices(&[Cuda(0), Cpu]), 2),
            Ok(vec![Cuda(0), Cpu])
        );
    }

    #[test]
    fn parses_every_form_and_names_the_bad_input() {
        for (s, d) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            (" CPU ", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("CUDA:12", DeviceSpec::Cuda(12)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>(), Ok(d), "{s}");
            assert_eq!(d.to_string().parse::<DeviceSpec>(), Ok(d));
        }
        for bad in [
            "gpu", "", "cuda:", "cuda:x", "cuda:-1", "cuda 0", "cuda:1:2",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert!("cuda:x"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("cuda:N"));
        assert!("cuda:99999999999999999999999"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("too large"));
    }
}
