//! The fused LSTM step kernel (`shaders/lstm_step.wgsl`): `main` for
//! inference, `main_train` to also save activations and apply dropout.

use super::{DropoutParams, Kernel, STEP_ROWS, STEP_TILE, STEP_UNITS};
use crate::gpu::{GpuContext, Precision};

/// Mirrors `StepParams` in `shaders/common.wgsl`, field for field: the
/// per-step uniform of the forward and the backward step kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub step: u32,
    pub parity: u32,
    pub seq_len: u32,
    pub batch: u32,
    pub hidden: u32,
    pub dirs: u32,
    pub slot: u32,
    pub slots: u32,
    pub dropout: DropoutParams,
    /// H_out: the width of h (P with a hidden projection, else H).
    pub h_out: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<StepParams>() == 80);

bindings! {
    /// The buffers one layer's steps read and write (`main`'s bindings).
    pub struct StepBuffers {
        /// Per-step `StepParams`, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        gates_x: Read,
        w_hh: Read,
        b_hh: Read,
        h_state: ReadWrite,
        c_state: ReadWrite,
        y: ReadWrite,
        lengths: Read,
    }
}

bindings! {
    /// What a training step saves for the backward pass (`main_train`'s
    /// bindings after [`StepBuffers`]').
    pub struct TrainBuffers {
        gates: ReadWrite,
        c: ReadWrite,
        h_prev: ReadWrite,
    }
}

/// Owns the two step pipelines, for one storage precision.
pub struct StepKernel {
    infer: Kernel,
    train: Kernel,
}

impl StepKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let types = &[("store_t", precision)];
        let source = include_str!("../../../shaders/lstm_step.wgsl");
        let infer =
            Kernel::new_typed::<StepBuffers>(ctx, "lstm step", source, "main", types, STEP_TILE);
        let train = Kernel::new_typed::<(StepBuffers, TrainBuffers)>(
            ctx,
            "lstm step (training)",
            source,
            "main_train",
            types,
            STEP_TILE,
        );
        StepKernel { infer, train }
    }

    /// A bind group for inference, or for training when `saved` is given.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        b: &StepBuffers<'_>,
        saved: Option<&TrainBuffers<'_>>,
    ) -> wgpu::BindGroup {
        match saved {
            Some(s) => self.train.bind(ctx, &(*b, *s)),
            None => self.infer.bind(ctx, b),
        }
    }

    /// Workgroups for one step: (unit blocks, batch blocks, directions).
    pub fn workgroups(hidden: usize, batch: usize, dirs: usize) -> (u32, u32, u32) {
        (
            (hidden as u32).div_ceil(STEP_UNITS),
            (batch as u32).div_ceil(STEP_ROWS),
            dirs as u32,
        )
    }

    /// Encodes one step: both directions of one layer in a single dispatch.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        training: bool,
        bind_group: &wgpu::BindGroup,
        params_offset: u32,
        workgroups: (u32, u32, u32),
    ) {
        let kernel = if training { &self.train } else { &self.infer };
        kernel.encode_at(ctx, pass, bind_group, &[params_offset], workgroups);
    }
}
