//! The training device as specs and command lines write it (`auto`, `cpu`, `cuda`, `cuda:N`): parsed
//! here and nowhere else, so that a spec the coordinator accepts is a device string every worker
//! understands. Resolving it to a libtorch device (is CUDA there, how many GPUs) is the worker's job
//! (`mer_worker::device::parse_device`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
