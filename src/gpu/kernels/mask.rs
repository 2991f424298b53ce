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

/// Mirrors `SlotParams` in `shaders/zero_slot.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SlotParams {
    pub rows: u32,
    pub cols: u32,
    pub slot: u32,
    pub offset: u32,
}
const _: () = assert!(std::mem::size_of::<SlotParams>() == 16);

bindings! {
    /// What one slot-clearing dispatch binds.
    struct SlotBuffers {
        params: Uniform<SlotParams>,
        data: ReadWrite,
    }
}

/// Clears one gate slot of an f32 gradient in the GPU layout: the padding
/// rows of a GRU's four-slot weights.
#[derive(Clone)]
pub struct ZeroSlotKernel {
    kernel: Kernel,
}

impl ZeroSlotKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        let kernel = Kernel::new::<SlotBuffers>(
            ctx,
            "zero a gate slot",
            include_str!("../../../shaders/zero_slot.wgsl"),
            "main",
            FLAT_TILE,
        );
        ZeroSlotKernel { kernel }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn bind(
        &self,
        ctx: &GpuContext,
        params: (&wgpu::Buffer, u64),
        data: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.kernel.bind(ctx, &SlotBuffers { params, data })
    }

    /// The grid of one dispatch over `p`'s slot rows.
    pub fn workgroups(ctx: &GpuContext, p: &SlotParams) -> (u32, u32, u32) {
        let (x, y) = PermuteKernel::workgroups(ctx, (p.rows / 4 * p.cols) as usize);
        (x, y, 1)
    }
}
