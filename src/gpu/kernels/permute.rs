//! Swapping the first two axes on the GPU (`shaders/permute.wgsl`), for
//! `batch_first` inputs and outputs.

use super::{FLAT_GROUP, FLAT_TILE, Kernel};
use crate::gpu::GpuContext;

/// Mirrors `PermuteParams` in `shaders/permute.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PermuteParams {
    pub rows: u32,
    pub cols: u32,
    pub inner: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<PermuteParams>() == 16);

bindings! {
    /// What one permute binds.
    struct PermuteBuffers {
        params: Uniform<PermuteParams>,
        src: Read,
        dst: ReadWrite,
    }
}

pub struct PermuteKernel {
    kernel: Kernel,
}

impl PermuteKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        let kernel = Kernel::new::<PermuteBuffers>(
            ctx,
            "permute",
            include_str!("../../../shaders/permute.wgsl"),
            "main",
            FLAT_TILE,
        );
        PermuteKernel { kernel }
    }

    pub fn bind(
        &self,
        ctx: &GpuContext,
        params: (&wgpu::Buffer, u64),
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.kernel.bind(ctx, &PermuteBuffers { params, src, dst })
    }

    /// A 2-D grid covering `total` elements within the per-dimension limit.
    pub fn workgroups(ctx: &GpuContext, total: usize) -> (u32, u32) {
        let groups = (total as u64).div_ceil(FLAT_GROUP as u64).max(1);
        let limit = ctx.limits().max_compute_workgroups_per_dimension as u64;
        let x = groups.min(limit);
        (x as u32, groups.div_ceil(x) as u32)
    }

    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: (u32, u32),
    ) {
        self.kernel
            .encode(ctx, pass, bind_group, (workgroups.0, workgroups.1, 1));
    }
}
