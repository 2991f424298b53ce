//! The tiled GEMM kernel (`shaders/gemm.wgsl`).

use super::{Binding, bind_group, build_pipeline, slice};
use crate::error::{LstmError, Result};
use crate::gpu::GpuContext;

/// Mirrors `GemmParams` in `shaders/gemm.wgsl`, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub bias_off: u32,
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<GemmParams>() == 48);

impl GemmParams {
    pub const TRANS_A: u32 = 1;
    pub const TRANS_B: u32 = 2;
    pub const BIAS: u32 = 4;
    pub const ACCUMULATE: u32 = 8;
}

/// A product to encode: `c = op(a) · op(b) (+ bias) (+ c)`.
pub struct GemmOp<'a> {
    pub params: GemmParams,
    pub a: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
    /// Any buffer when `params.flags` lacks `BIAS`.
    pub bias: &'a wgpu::Buffer,
    pub c: &'a wgpu::Buffer,
}

/// Owns the GEMM pipeline.
pub struct GemmKernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Output tile edge of one workgroup (BM = BN in the shader).
const TILE: u32 = 64;

impl GemmKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        let (pipeline, layout) = build_pipeline(
            ctx,
            "gemm",
            include_str!("../../../shaders/gemm.wgsl"),
            &[
                Binding::Uniform { dynamic: false },
                Binding::Read,
                Binding::Read,
                Binding::Read,
                Binding::ReadWrite,
            ],
        );
        GemmKernel { pipeline, layout }
    }

    /// A bind group for `op`, reading its parameters from `params_buffer` at
    /// `params_offset` (written by the caller).
    pub fn bind(
        &self,
        ctx: &GpuContext,
        op: &GemmOp<'_>,
        params_buffer: &wgpu::Buffer,
        params_offset: u64,
    ) -> wgpu::BindGroup {
        bind_group(
            ctx,
            "gemm",
            &self.layout,
            vec![
                slice(
                    params_buffer,
                    params_offset,
                    std::mem::size_of::<GemmParams>() as u64,
                ),
                op.a.as_entire_binding(),
                op.b.as_entire_binding(),
                op.bias.as_entire_binding(),
                op.c.as_entire_binding(),
            ],
        )
    }

    /// Workgroups for an M×N product, checked against the device limit.
    pub fn workgroups(ctx: &GpuContext, params: &GemmParams) -> Result<(u32, u32)> {
        let (x, y) = (params.n.div_ceil(TILE), params.m.div_ceil(TILE));
        let limit = ctx.limits().max_compute_workgroups_per_dimension;
        if x.max(y) > limit {
            return Err(LstmError::DeviceLimit {
                what: format!("a {}×{} matrix product", params.m, params.n),
                limit: "max_compute_workgroups_per_dimension",
                requested: x.max(y) as u64,
                available: limit as u64,
            });
        }
        Ok((x, y))
    }

    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: (u32, u32),
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(workgroups.0, workgroups.1, 1);
        ctx.count_dispatch();
    }
}
