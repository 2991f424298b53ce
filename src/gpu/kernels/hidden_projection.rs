//! The hidden-projection kernels of LSTMP (`proj_size` > 0): h_t = m_t · W_hrᵀ
//! after each forward step (`shaders/lstm_proj.wgsl`), and the P-wide
//! dh_t before each backward step (`shaders/lstm_proj_backward.wgsl`).

use super::{Binding, Kernel, slice};
use crate::gpu::kernels::StepParams;
use crate::gpu::{GpuContext, Precision};

/// Projected units per workgroup and batch rows per workgroup (WG, RB in
/// the shaders).
const UNITS_PER_GROUP: u32 = 64;
const ROWS_PER_GROUP: u32 = 4;

/// Workgroups for one projection step: (unit blocks, batch blocks, directions).
pub fn hidden_proj_workgroups(proj: usize, batch: usize, dirs: usize) -> (u32, u32, u32) {
    (
        (proj as u32).div_ceil(UNITS_PER_GROUP),
        (batch as u32).div_ceil(ROWS_PER_GROUP),
        dirs as u32,
    )
}

/// The buffers one layer's forward projections read and write.
pub struct HiddenProjBuffers<'a> {
    /// Per-step `StepParams`, bound with a dynamic offset.
    pub params: &'a wgpu::Buffer,
    /// [T, B, D·H]: m_t = o ⊙ tanh(c_t), written by the step kernel.
    pub m: &'a wgpu::Buffer,
    /// [D, P, H]
    pub w_hr: &'a wgpu::Buffer,
    /// [2, L·D, B, P]
    pub h_state: &'a wgpu::Buffer,
    /// [T, B, D·P]: the layer output.
    pub y: &'a wgpu::Buffer,
    /// \[B\] u32
    pub lengths: &'a wgpu::Buffer,
}

/// h_t = m_t · W_hrᵀ for one step, both directions.
pub struct HiddenProjKernel {
    kernel: Kernel,
}

impl HiddenProjKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        use Binding::{Read, ReadWrite};
        let kernel = Kernel::new_typed(
            ctx,
            "lstm hidden projection",
            include_str!("../../../shaders/lstm_proj.wgsl"),
            "main",
            &[
                Binding::Uniform { dynamic: true },
                Read,
                Read,
                ReadWrite,
                ReadWrite,
                Read,
            ],
            &[("store_t", precision)],
        );
        HiddenProjKernel { kernel }
    }

    pub fn bind(&self, ctx: &GpuContext, b: &HiddenProjBuffers<'_>) -> wgpu::BindGroup {
        self.kernel.bind(
            ctx,
            vec![
                slice(b.params, 0, std::mem::size_of::<StepParams>() as u64),
                b.m.as_entire_binding(),
                b.w_hr.as_entire_binding(),
                b.h_state.as_entire_binding(),
                b.y.as_entire_binding(),
                b.lengths.as_entire_binding(),
            ],
        )
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

/// The buffers one layer's backward projections read and write.
pub struct HiddenProjBackwardBuffers<'a> {
    /// Per-step `StepParams` of the backward pass, bound with a dynamic offset.
    pub params: &'a wgpu::Buffer,
    /// [T, B, D, H, 4]
    pub d_gates: &'a wgpu::Buffer,
    /// [D, P, H, 4]
    pub w_hh: &'a wgpu::Buffer,
    /// [T, B, D·P]
    pub dy: &'a wgpu::Buffer,
    pub lengths: &'a wgpu::Buffer,
    /// [T, B, D·P]: dh_t, written here.
    pub dh: &'a wgpu::Buffer,
    /// [2, L·D, B, P]
    pub dh_carry: &'a wgpu::Buffer,
    /// [L·D, B, P]
    pub d_h0: &'a wgpu::Buffer,
}

/// dh_t = dy_t ⊙ mask + dG_{t+1} · W_hh for one backward step, both directions.
pub struct HiddenProjBackwardKernel {
    kernel: Kernel,
}

impl HiddenProjBackwardKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        use Binding::{Read, ReadWrite};
        let kernel = Kernel::new_typed(
            ctx,
            "lstm hidden projection backward",
            concat!(
                include_str!("../../../shaders/backward_common.wgsl"),
                include_str!("../../../shaders/lstm_proj_backward.wgsl")
            ),
            "main",
            &[
                Binding::Uniform { dynamic: true },
                Read,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
                ReadWrite,
            ],
            &[("store_t", precision)],
        );
        HiddenProjBackwardKernel { kernel }
    }

    pub fn bind(&self, ctx: &GpuContext, b: &HiddenProjBackwardBuffers<'_>) -> wgpu::BindGroup {
        self.kernel.bind(
            ctx,
            vec![
                slice(b.params, 0, std::mem::size_of::<StepParams>() as u64),
                b.d_gates.as_entire_binding(),
                b.w_hh.as_entire_binding(),
                b.dy.as_entire_binding(),
                b.lengths.as_entire_binding(),
                b.dh.as_entire_binding(),
                b.dh_carry.as_entire_binding(),
                b.d_h0.as_entire_binding(),
            ],
        )
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
