//! # wgpu-lstm
//!
//! LSTM training and inference with PyTorch `nn.LSTM` semantics, on the CPU
//! or on any GPU through wgpu (Vulkan, Metal, DX12), with one API (and
//! `nn.GRU`, with [`Cell::Gru`], on the CPU):
//!
//! - [`Device`]: where work runs ([`Device::auto`], [`Device::cpu`],
//!   [`Device::gpu`]).
//! - [`Lstm`]: inference on a device; [`Trainer`]: training of a [`Model`]
//!   (embedding, LSTM, head) on a device, with one checkpoint format.
//!
//! Module map:
//! - [`reference`](mod@reference): the specification, in plain loops (f32 or f64): the
//!   LSTM forward and backward through time, layers, losses, optimizers, and
//!   [`reference::ReferenceTrainer`]. Every engine is tested against it.
//! - [`cpu`]: the CPU engine ([`cpu::CpuEngine`]): SIMD step kernels on a
//!   thread pool.
//! - [`gpu`]: the GPU engine: WGSL kernels through wgpu, and its
//!   GPU-resident API.
//! - [`config`]: [`LstmConfig`], PyTorch's constructor arguments and defaults,
//!   and [`Cell`] (LSTM or GRU).
//! - [`weights`]: [`LstmWeights`], parameters in PyTorch layout; safetensors I/O.
//! - [`model`]: [`Model`], [`TrainConfig`], [`Batch`].
//! - [`dropout`]: the counter-based dropout mask shared by every engine.
//! - [`tensor_file`]: [`TensorFile`] and [`save_tensors`], tensors in
//!   safetensors files.

#![warn(missing_docs)]

mod checkpoint;
pub mod config;
pub mod cpu;
mod device;
pub mod dropout;
pub mod error;
mod gemm;
pub mod gpu;
pub mod input;
mod io;
mod lstm;
pub mod model;
mod model_file;
pub mod real;
pub mod reference;
mod runtime;
pub mod tensor;
pub mod tensor_file;
mod trainer;
pub mod weights;

pub use config::{Activation, Cell, LstmConfig};
pub use device::Device;
pub use error::{LstmError, Result};
pub use gpu::Precision;
pub use input::LstmInput;
pub use lstm::Lstm;
pub use model::{
    Accuracy, Batch, HeadKind, Inputs, LossKind, Model, ModelBuilder, Targets, TrainConfig,
};
pub use real::Real;
pub use reference::{LrSchedule, LstmOutput, OptimizerKind};
pub use tensor::Tensor;
pub use tensor_file::{TensorFile, save_tensors};
pub use trainer::Trainer;
pub use weights::{InitOptions, LayerWeights, LstmWeights, ParamKind};

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
