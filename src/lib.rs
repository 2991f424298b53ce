//! # wgpu-lstm
//!
//! LSTM training and inference with PyTorch `nn.LSTM` semantics: a plain CPU
//! reference (the specification every other path is held to) and, built on
//! it, WGSL compute kernels that run through wgpu on Vulkan, Metal and DX12.
//!
//! Module map:
//! - [`config`]: [`LstmConfig`], PyTorch's constructor arguments and defaults.
//! - [`weights`]: [`LstmWeights`], parameters in PyTorch layout; safetensors I/O.
//! - [`cpu`]: the CPU reference, forward and backward through time.
//! - [`dropout`]: the counter-based dropout mask shared by every path.

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
pub mod io;
mod lstm;
pub mod model;
pub mod real;
pub mod reference;
pub mod tensor;
mod trainer;
pub mod weights;

pub use config::LstmConfig;
pub use device::Device;
pub use error::{LstmError, Result};
pub use gpu::Precision;
pub use input::LstmInput;
pub use lstm::Lstm;
pub use model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
pub use real::Real;
pub use reference::{LrSchedule, LstmOutput, OptimizerKind};
pub use tensor::Tensor;
pub use trainer::Trainer;
pub use weights::{InitOptions, LayerWeights, LstmWeights, ParamKind};

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
