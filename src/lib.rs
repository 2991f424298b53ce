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

pub mod config;
pub mod cpu;
pub mod dropout;
pub mod error;
pub mod gpu;
pub mod input;
pub mod io;
pub mod model;
pub mod real;
pub mod tensor;
pub mod train;
pub mod weights;

pub use config::LstmConfig;
pub use error::{LstmError, Result};
pub use input::LstmInput;
pub use real::Real;
pub use tensor::Tensor;
pub use weights::{InitOptions, LayerWeights, LstmWeights, ParamKind};

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
