//! [`Device`]: where a model runs, as `torch.device`, Burn's device or
//! candle's `Device` say it. [`Lstm`](crate::Lstm) and
//! [`Trainer`](crate::Trainer) take one and behave the same on each.

use std::fmt;

use crate::cpu::CpuEngine;
use crate::error::{LstmError, Result};
use crate::gpu::{GpuContext, Precision, check_precision};

/// The CPU engine, or a GPU through wgpu. Cheap to clone: clones share the
/// CPU engine's threads or the GPU device.
#[derive(Clone)]
pub struct Device {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cpu(CpuEngine),
    Gpu {
        ctx: GpuContext,
        precision: Precision,
    },
}

impl Device {
    /// The CPU engine (f32, SIMD step kernels), on one thread per core;
    /// [`with_threads`](Self::with_threads) sets another count.
    pub fn cpu() -> Device {
        Device {
            kind: Kind::Cpu(CpuEngine::new()),
        }
    }

    /// The GPU adapter that `WGPU_ADAPTER_NAME` names (a substring of its
    /// name), else wgpu's choice preferring a high-performance GPU;
    /// `WGPU_BACKEND` restricts the backends. A software adapter such as
    /// lavapipe is used if it is the one found. f32 precision;
    /// [`with_precision`](Self::with_precision) sets f16.
    ///
    /// [`LstmError::NoAdapter`] when there is none.
    pub fn gpu() -> Result<Device> {
        Ok(Device::from_context(GpuContext::new()?))
    }

    /// [`gpu`](Self::gpu), awaiting the adapter and the device instead of
    /// blocking: the form a browser needs, where the GPU is the browser's
    /// WebGPU adapter.
    pub async fn gpu_async() -> Result<Device> {
        Ok(Device::from_context(GpuContext::new_async().await?))
    }

    /// A device on an open GPU context, in f32.
    pub fn from_context(ctx: GpuContext) -> Device {
        Device {
            kind: Kind::Gpu {
                ctx,
                precision: Precision::F32,
            },
        }
    }

    /// A hardware GPU when there is one, else the CPU engine; never fails.
    ///
    /// A software adapter (lavapipe, llvmpipe, WARP, SwiftShader) is not
    /// taken: the CPU engine is about 100× faster than one. It is used when
    /// asked for: by `WGPU_LSTM_DEVICE=gpu`, by naming it in
    /// `WGPU_ADAPTER_NAME`, or with [`Device::gpu`]. `WGPU_LSTM_DEVICE=cpu`
    /// chooses the CPU engine. A GPU that fails to open leaves the CPU engine,
    /// with the reason on stderr.
    pub fn auto() -> Device {
        // In a browser this cannot wait for an adapter: the CPU engine
        // (`auto_async` awaits one).
        crate::runtime::block_on("Device::auto", async { Ok(Self::auto_async().await) })
            .unwrap_or_else(|_| Device::cpu())
    }

    /// [`auto`](Self::auto), awaiting the adapter and the device instead of
    /// blocking: the form a browser needs.
    pub async fn auto_async() -> Device {
        let wanted = std::env::var("WGPU_LSTM_DEVICE").unwrap_or_default();
        match wanted.to_lowercase().as_str() {
            "cpu" => return Device::cpu(),
            "gpu" => {
                return Device::gpu_async().await.unwrap_or_else(|e| {
                    eprintln!("wgpu-lstm: WGPU_LSTM_DEVICE=gpu, but {e}; using the CPU engine");
                    Device::cpu()
                });
            }
            "" | "auto" => {}
            other => eprintln!(
                "wgpu-lstm: WGPU_LSTM_DEVICE={other:?} is not cpu, gpu or auto; choosing automatically"
            ),
        }
        let named = std::env::var_os("WGPU_ADAPTER_NAME").is_some();
        match crate::gpu::hardware_adapter_async(named).await {
            Some(adapter) => GpuContext::from_adapter_async(&adapter)
                .await
                .map(Device::from_context)
                .unwrap_or_else(|e| {
                    eprintln!("wgpu-lstm: {e}; using the CPU engine");
                    Device::cpu()
                }),
            None => Device::cpu(),
        }
    }

    /// The same device with `threads` CPU threads (at least 1). Only the CPU
    /// engine has threads to set: on a GPU this is an error.
    pub fn with_threads(self, threads: usize) -> Result<Device> {
        match self.kind {
            Kind::Cpu(_) => Ok(Device {
                kind: Kind::Cpu(CpuEngine::with_threads(threads)?),
            }),
            Kind::Gpu { .. } => Err(LstmError::InvalidConfig {
                field: "threads",
                reason: "is a setting of the CPU engine, not of a GPU device".into(),
            }),
        }
    }

    /// The same device storing weights and activations in `precision`.
    /// f16 needs a GPU with `SHADER_F16` ([`LstmError::MissingFeature`]
    /// otherwise); the CPU engine computes in f32 only
    /// ([`LstmError::InvalidConfig`] for f16).
    pub fn with_precision(self, precision: Precision) -> Result<Device> {
        match self.kind {
            Kind::Gpu { ctx, .. } => {
                check_precision(precision, ctx.features(), &ctx.adapter_info().name)?;
                Ok(Device {
                    kind: Kind::Gpu { ctx, precision },
                })
            }
            Kind::Cpu(_) if precision == Precision::F32 => Ok(self),
            Kind::Cpu(_) => Err(LstmError::InvalidConfig {
                field: "precision",
                reason: "f16 runs on a GPU only; the CPU engine computes in f32".into(),
            }),
        }
    }

    /// Whether this is a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, Kind::Gpu { .. })
    }

    /// The storage precision: f32 on the CPU.
    pub fn precision(&self) -> Precision {
        match &self.kind {
            Kind::Cpu(_) => Precision::F32,
            Kind::Gpu { precision, .. } => *precision,
        }
    }

    /// The GPU context, for the GPU-resident API ([`crate::gpu`]).
    pub fn gpu_context(&self) -> Option<&GpuContext> {
        match &self.kind {
            Kind::Gpu { ctx, .. } => Some(ctx),
            Kind::Cpu(_) => None,
        }
    }

    /// The CPU engine, for its own API ([`crate::cpu`]).
    pub fn cpu_engine(&self) -> Option<&CpuEngine> {
        match &self.kind {
            Kind::Cpu(engine) => Some(engine),
            Kind::Gpu { .. } => None,
        }
    }

    /// What runs the work: `cpu (N threads)`, or the adapter's name and
    /// backend, with the precision when it is not f32.
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Cpu(engine) => match engine.threads() {
                1 => "cpu (1 thread)".to_string(),
                n => format!("cpu ({n} threads)"),
            },
            Kind::Gpu { ctx, precision } => {
                let info = ctx.adapter_info();
                let p = match precision {
                    Precision::F32 => "",
                    Precision::F16 => ", f16",
                };
                format!("{} ({:?}{p})", info.name, info.backend)
            }
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

impl Default for Device {
    /// [`Device::auto`].
    fn default() -> Self {
        Device::auto()
    }
}
