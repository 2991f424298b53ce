//! One step of backpropagation through time (`shaders/lstm_step_backward.wgsl`).

use super::{Kernel, STEP_ROWS, STEP_TILE, STEP_UNITS, StepParams};
use crate::gpu::{GpuContext, Precision};

bindings! {
    /// The buffers one layer's backward steps read and write.
    pub struct BackwardBuffers {
        /// Per-step `StepParams` of the backward pass, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        gates: Read,
        c_saved: Read,
        w_hh: Read,
        /// dy [T, B, D·H]; with a hidden projection, dh_t [T, B, D·P] from
        /// [`super::HiddenProjBackwardKernel`].
        dh_in: Read,
        d_gates: ReadWrite,
        /// The carried gradients, dh_0, dc_0 and the forward's c_0, in one
        /// buffer (`Carries`).
        carries: ReadWrite,
        lengths: Read,
        /// With a hidden projection: W_hr [D, P, H]; any buffer otherwise.
        w_hr: Read,
    }
}

pub struct BackwardStepKernel {
    kernel: Kernel,
}

impl BackwardStepKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let kernel = Kernel::new_typed::<BackwardBuffers>(
            ctx,
            "lstm step backward",
            concat!(
                include_str!("../../../shaders/backward_common.wgsl"),
                include_str!("../../../shaders/lstm_step_backward.wgsl")
            ),
            "main",
            &[("store_t", precision)],
            STEP_TILE,
        );
        BackwardStepKernel { kernel }
    }

    /// Workgroups for one backward step: (unit blocks, batch blocks, directions).
    pub fn workgroups(hidden: usize, batch: usize, dirs: usize) -> (u32, u32, u32) {
        (
            (hidden as u32).div_ceil(STEP_UNITS),
            (batch as u32).div_ceil(STEP_ROWS),
            dirs as u32,
        )
    }

    pub fn bind(&self, ctx: &GpuContext, b: &BackwardBuffers<'_>) -> wgpu::BindGroup {
        self.kernel.bind(ctx, b)
    }

    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        params_offset: u32,
        workgroups: (u32, u32, u32),
    ) {
        self.kernel
            .encode_at(ctx, pass, bind_group, &[params_offset], workgroups);
    }
}
