//! neuralign's similarity engine: representational metrics computed on
//! libtorch tensors, device-agnostic (CPU or CUDA) and in float64 when exact
//! agreement with reference implementations matters. This crate knows
//! nothing of the database or the network: it takes tensors and returns
//! numbers, so it is tested on its own.

pub mod bootstrap_cpu;
pub mod cca;
pub mod cka;
pub mod error;
pub mod inference;
pub mod kendall;
pub mod knn;
pub mod lru;
pub mod metrics;
pub mod models;
pub mod one_to_one;
pub mod pipeline;
pub mod pls;
pub mod predictivity;
pub mod rank;
pub mod rdm;
pub mod reduce;
pub mod ridge;
pub mod samples;
pub mod shape;
pub mod splits;

pub use error::{EngineError, Result};
pub use metrics::{compute, compute_detailed, compute_detailed_with, Kept, TargetMemo};
pub use ridge::DecompositionCache;

/// Picks the compute device from a config string: `cpu`, `cuda` or `cuda:N`.
/// Asking for CUDA where there is none is an error, never a silent fallback.
pub fn parse_device(s: &str) -> Result<tch::Device> {
    let device = match s {
        "cpu" => return Ok(tch::Device::Cpu),
        "cuda" => tch::Device::Cuda(0),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => tch::Device::Cuda(n),
            None => {
                return Err(EngineError::invalid(format!(
                    "device: {s:?} is not one of cpu, cuda, cuda:N"
                )))
            }
        },
    };
    let tch::Device::Cuda(n) = device else {
        unreachable!()
    };
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        return Err(EngineError::invalid(format!(
            "device: {s} was requested but this machine has {count} CUDA device(s)"
        )));
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_are_chosen_and_absent_cuda_fails_fast() {
        assert_eq!(super::parse_device("cpu").unwrap(), tch::Device::Cpu);
        let err = super::parse_device("cuda:7").unwrap_err().to_string();
        assert!(err.contains("cuda:7 was requested"), "{err}");
        assert!(super::parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("\"tpu\""));
    }
}
