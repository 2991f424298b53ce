//! The GPU engine: WGSL kernels run through wgpu (Vulkan, Metal, DX12).
//!
//! - [`GpuContext`]: adapter, device and queue, typed errors, work counters.
//! - [`GpuTensor`]: an f32 buffer with its shape; upload and read-back.
//! - [`GpuLstm`]: the LSTM forward and backward passes, validated against [`crate::reference`].
//! - [`GpuTrainer`]: a whole training step (model, loss, optimizer) in one submit.
//! - [`GemmBench`]: the GEMM kernel alone, for the benchmarks.
//!
//! Inside (crate-private): `kernels`, one Rust type per WGSL kernel in
//! `shaders/`, and `layout`, the by-unit weight layout the kernels use.
//! - [`Precision`]: f32, or f16 storage with f32 accumulation.

mod context;
pub(crate) mod kernels;
pub(crate) mod layout;
mod lstm;
pub(crate) mod params;
mod precision;
mod profiler;
mod tensor;
mod trainer;
pub mod tune;
mod workspace;

pub(crate) use context::hardware_adapter_async;
pub use context::{
    AdapterSummary, Counters, GpuContext, adapters, gpu_required_by_env, list_adapters,
};
/// Times the GEMM kernel alone on a device (C = A·Bᵀ), for the benchmarks.
pub use kernels::GemmRunner as GemmBench;
pub use kernels::StepConfig;
pub use kernels::{GemmKind, GemmLayout, GemmTile};
pub use lstm::{GpuLstm, GpuLstmOutput, GpuMemory, InitialState, StepLaunch};
pub use precision::{LossScale, Precision, check_precision};
pub use profiler::KernelTimes;
pub use tensor::{GpuTensor, read_back, read_back_async};
pub use trainer::GpuTrainer;
pub use tune::{TuneMode, TuneReport, TuneSource};
