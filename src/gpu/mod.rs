//! The GPU engine: WGSL kernels run through wgpu (Vulkan, Metal, DX12).
//!
//! - [`GpuContext`]: adapter, device and queue, typed errors, work counters.
//! - [`GpuTensor`]: an f32 buffer with its shape; upload and read-back.
//! - [`GpuLstm`]: the LSTM forward and backward passes, validated against [`crate::reference`].
//! - [`GpuTrainer`]: a whole training step (model, loss, optimizer) in one submit.
//! - [`kernels`]: one Rust type per WGSL kernel in `shaders/`.
//! - [`layout`]: the by-unit weight layout the kernels use.
//! - [`Precision`]: f32, or f16 storage with f32 accumulation.

mod context;
pub mod kernels;
pub mod layout;
mod lstm;
mod params;
mod precision;
mod profiler;
mod tensor;
mod trainer;
mod workspace;

pub(crate) use context::hardware_adapter;
pub use context::{AdapterSummary, Counters, GpuContext, gpu_required_by_env, list_adapters};
pub use lstm::{GpuLstm, GpuLstmOutput, GpuMemory, InitialState};
pub use precision::{LossScale, Precision, check_precision};
pub use profiler::KernelTimes;
pub use tensor::{GpuTensor, read_back};
pub use trainer::GpuTrainer;
