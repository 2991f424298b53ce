//! Input dropout's mask on a layer's input and on its gradient
//! (`shaders/mask_rows.wgsl`), in place.

use super::{FLAT_TILE, Kernel, PermuteKernel};
use crate::gpu::GpuContext;

/// Mirrors `MaskParams` in `shaders/mask_rows.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MaskParams {
    pub batch: u32,
    pub cols: u32,
    pub total: u32,
    /// The u32 index in the lengths buffer where the mask [B, cols] starts.
    pub offset: u32,
}
const _: () = assert!(std::mem::size_of::<MaskParams>() == 16);

bindings! {
    /// What one masking dispatch binds.
    struct MaskBuffers {
        params: Uniform<MaskParams>,
        data: ReadWrite,
        lengths: Read,
    }
}

/// `data[t, b, f] *= mask[b, f]`, one invocation per element.
#[derive(Clone)]
pub struct MaskKernel {
    kernel: Kernel,
}

impl MaskKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        let kernel = Kernel::new::<MaskBuffers>(
            ctx,
            "input dropout mask",
            include_str!("../../../shaders/mask_rows.wgsl"),
            "main",
            FLAT_TILE,
        );
        MaskKernel { kernel }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn bind(
        &self,
        ctx: &GpuContext,
        params: &wgpu::Buffer,
        data: &wgpu::Buffer,
        lengths: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.kernel.bind(
            ctx,
            &MaskBuffers {
                params: (params, 0),
                data,
                lengths,
            },
        )
    }

    /// The grid over `total` elements.
    pub fn workgroups(ctx: &GpuContext, total: usize) -> (u32, u32, u32) {
        let (x, y) = PermuteKernel::workgroups(ctx, total);
        (x, y, 1)
    }
}
