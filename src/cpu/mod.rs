//! The CPU reference: PyTorch's `nn.LSTM`, forward and backward through time,
//! in plain loops around one GEMM routine. This is the specification that the
//! GPU kernels are tested against, and the CPU baseline of the benchmark.
//!
//! It is generic over [`Real`](crate::Real): `f32` for use, `f64` for
//! finite-difference gradient checks.

mod backward;
mod forward;
mod fused;
mod fused_backward;
mod fused_projection;
#[cfg(test)]
mod fused_tests;
pub mod gemm;
pub(crate) mod scratch;
mod split;
mod vmath;

pub use backward::{Gradients, OutputGrads, ParamGradients, backward, backward_params};
pub use forward::{DirectionCache, ForwardCache, LayerCache, LstmOutput, forward, forward_train};
pub use scratch::{release_scratch, scratch_bytes};
