//! The hidden-projection kernels of LSTMP (`proj_size` > 0): h_t = m_t · W_hrᵀ
//! after each forward step (`shaders/lstm_proj.wgsl`), and the P-wide
//! dh_t before each backward step (`shaders/lstm_proj_backward.wgsl`).

use super::lstm_step::StepTile;
use super::{Kernel, STEP_ROWS, STEP_TILE, STEP_UNITS, TileCache, TilePipeline};
use crate::gpu::kernels::StepParams;
use crate::gpu::{GpuContext, Precision};

/// Workgroups for one backward projection step: (unit blocks, batch blocks,
/// directions).
pub fn hidden_proj_workgroups(proj: usize, batch: usize, dirs: usize) -> (u32, u32, u32) {
    (
        (proj as u32).div_ceil(STEP_UNITS),
        (batch as u32).div_ceil(STEP_ROWS),
        dirs as u32,
    )
}

bindings! {
    /// The buffers one layer's forward hidden projections read and write.
    pub struct HiddenProjBuffers {
        /// Per-step `StepParams`, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        /// [T, B, D·H]: m_t = o ⊙ tanh(c_t), written by the step kernel.
        m: Read,
        /// [D, P, H]
        w_hr: Read,
        /// [2, L·D, B, P]
        h_state: ReadWrite,
        /// [T, B, D·P]: the layer output.
        y: ReadWrite,
        /// \[B\] u32
        lengths: Read,
    }
}

/// Builds the forward hidden-projection pipeline of each tile once, for one
/// precision: h_t = m_t · W_hrᵀ for one step, both directions, on the step
/// kernel's plan ([`StepTile`], with projected units as its units).
pub struct HiddenProjKernel {
    precision: Precision,
    built: TileCache<StepTile, HiddenProjPipeline>,
}

/// The forward hidden-projection pipeline of one tile.
pub(crate) type HiddenProjPipeline = TilePipeline<StepTile>;

impl HiddenProjKernel {
    pub fn new(precision: Precision) -> Self {
        HiddenProjKernel {
            precision,
            built: TileCache::new(),
        }
    }

    /// The pipeline of `tile`, built on first use.
    pub(crate) fn pipeline(&mut self, ctx: &GpuContext, tile: StepTile) -> HiddenProjPipeline {
        let precision = self.precision;
        self.built.get(tile, || {
            let kernel = Kernel::new_typed::<HiddenProjBuffers>(
                ctx,
                "lstm hidden projection",
                include_str!("../../../shaders/lstm_proj.wgsl"),
                "main",
                &[("store_t", precision)],
                &tile.constants(),
            );
            TilePipeline::new(tile, kernel)
        })
    }
}

bindings! {
    /// The buffers one layer's backward hidden projections read and write.
    pub struct HiddenProjBackwardBuffers {
        /// Per-step `StepParams` of the backward pass, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        /// [T, B, D, H, 4]
        d_gates: Read,
        /// [D·4H, P], rows by unit
        w_hh: Read,
        /// [T, B, D·P]
        dy: Read,
        lengths: Read,
        /// [T, B, D·P]: dh_t, written here.
        dh: ReadWrite,
        /// The carried dh and dh_0 (the same `Carries` buffer as the cell
        /// kernel's).
        carries: ReadWrite,
    }
}

/// dh_t = dy_t ⊙ mask + dG_{t+1} · W_hh for one backward step, both directions.
pub struct HiddenProjBackwardKernel {
    kernel: Kernel,
}

impl HiddenProjBackwardKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let kernel = Kernel::new_typed::<HiddenProjBackwardBuffers>(
            ctx,
            "lstm hidden projection backward",
            concat!(
                include_str!("../../../shaders/backward_common.wgsl"),
                include_str!("../../../shaders/lstm_proj_backward.wgsl")
            ),
            "main",
            &[("store_t", precision)],
            STEP_TILE,
        );
        HiddenProjBackwardKernel { kernel }
    }

    pub fn bind(&self, ctx: &GpuContext, b: &HiddenProjBackwardBuffers<'_>) -> wgpu::BindGroup {
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
