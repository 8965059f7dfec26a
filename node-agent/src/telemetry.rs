//! GPU inventory and telemetry through NVML, loaded at run time: on a host without
//! an NVIDIA driver the agent still runs (echo, commands, CPU runtimes) and simply
//! reports no GPUs.

use gpubridge_protocol::node::{Gpu, GpuTelemetry, GpuTier};
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;

const MIB: u64 = 1024 * 1024;

pub struct Telemetry {
    nvml: Option<Nvml>,
}

impl Telemetry {
    /// Loads NVML if a driver provides it.
    pub fn init() -> Telemetry {
        let nvml = match Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(e) => {
                tracing::info!(reason = %e, "no NVIDIA driver found: reporting no GPUs");
                None
            }
        };
        let telemetry = Telemetry { nvml };
        if telemetry.nvml.is_some() {
            let gpus: Vec<String> = telemetry.gpus().into_iter().map(|g| g.model).collect();
            tracing::info!(?gpus, "GPUs found through NVML");
        }
        telemetry
    }

    /// A stand-in with no driver, for tests and CPU-only hosts.
    pub fn none() -> Telemetry {
        Telemetry { nvml: None }
    }

    fn count(&self) -> u32 {
        self.nvml
            .as_ref()
            .and_then(|n| n.device_count().ok())
            .unwrap_or(0)
    }

    pub fn gpus(&self) -> Vec<Gpu> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        (0..self.count())
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let model = device.name().ok()?;
                let memory_mib = device.memory_info().map_or(0, |m| m.total / MIB);
                Some(Gpu {
                    index,
                    tier: GpuTier::from_model(&model),
                    model,
                    memory_mib,
                })
            })
            .collect()
    }

    pub fn sample(&self) -> Vec<GpuTelemetry> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        (0..self.count())
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                Some(GpuTelemetry {
                    index,
                    utilization_percent: device
                        .utilization_rates()
                        .map_or(0, |u| u.gpu.min(100) as u8),
                    memory_used_mib: device.memory_info().map_or(0, |m| m.used / MIB),
                    temperature_celsius: device
                        .temperature(TemperatureSensor::Gpu)
                        .ok()
                        .map(|t| t.min(u16::MAX as u32) as u16),
                })
            })
            .collect()
    }
}
