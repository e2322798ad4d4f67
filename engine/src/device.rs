//! The compute device named by the `rdl.device` setting: `auto`, `cpu`, `cuda`, `cuda:N`.
//!
//! CUDA exists only in builds with the cargo feature `cuda` (which needs `nvcc`; CI never
//! builds it). Without it — or without a GPU — every choice resolves to the CPU and says
//! why, so a server configured for a GPU still answers.

use std::fmt;

pub use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first GPU when built with CUDA and one is present, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses a setting value (case-insensitive, surrounding blanks ignored).
    pub fn parse(s: &str) -> Result<DeviceSpec, String> {
        let v = s.trim().to_ascii_lowercase();
        match v.as_str() {
            "auto" | "" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match v.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) if n < 1024 => Ok(DeviceSpec::Cuda(n)),
                _ => Err(format!(
                    "invalid device \"{s}\": use auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this build can use CUDA at all.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// An opened device, its name (`cpu`, `cuda:0`) and, when it is not what was asked for,
/// why.
pub struct Opened {
    pub device: Device,
    pub name: String,
    pub note: Option<String>,
}

/// Opens the device a spec names, falling back to the CPU (with a note) when it cannot.
pub fn open(spec: DeviceSpec) -> Opened {
    let cpu = |note: Option<String>| Opened {
        device: Device::Cpu,
        name: "cpu".into(),
        note,
    };
    match spec {
        DeviceSpec::Cpu => cpu(None),
        DeviceSpec::Auto => match cuda(0) {
            Ok(o) => o,
            Err(_) => cpu(None),
        },
        DeviceSpec::Cuda(n) => match cuda(n) {
            Ok(o) => o,
            Err(e) => cpu(Some(format!("{spec} requested, using the CPU: {e}"))),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda(n: usize) -> Result<Opened, String> {
    // `Device::new_cuda` errors when there is no such GPU (or no driver): the caller falls
    // back to the CPU.
    Device::new_cuda(n)
        .map(|device| Opened {
            device,
            name: format!("cuda:{n}"),
            note: None,
        })
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda(_n: usize) -> Result<Opened, String> {
    Err("rdl was built without CUDA (cargo feature \"cuda\")".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(DeviceSpec::parse("auto"), Ok(DeviceSpec::Auto));
        assert_eq!(DeviceSpec::parse(" CPU "), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        for bad in ["cuda:", "cuda:x", "cuda:-1", "tpu", "cuda:99999"] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn without_a_gpu_everything_is_the_cpu() {
        if CUDA_BUILT {
            return; // depends on the machine
        }
        let o = open(DeviceSpec::Auto);
        assert_eq!((o.name.as_str(), o.note.is_none()), ("cpu", true));
        let o = open(DeviceSpec::Cuda(0));
        assert_eq!(o.name, "cpu");
        assert!(o.note.unwrap().contains("without CUDA"));
        assert!(matches!(open(DeviceSpec::Cpu).device, Device::Cpu));
    }
}
