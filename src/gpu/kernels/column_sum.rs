//! A column reduction (`shaders/column_sum.wgsl`): the bias gradient
//! db = 1ᵀ · dG without a GEMM's tile of mostly idle rows, and the sum of a
//! split-K GEMM's slices.

use super::{Kernel, check_groups};
use crate::error::Result;
use crate::gpu::{GpuContext, Precision};

/// Mirrors `ColumnSumParams` in `shaders/column_sum.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ColumnSumParams {
    pub rows: u32,
    pub cols: u32,
    /// Row stride of the source, in elements.
    pub ld: u32,
    /// First element of the source.
    pub src_off: u32,
    /// 1: also write the sums after the first `cols` (the b_hh half).
    pub pair: u32,
    /// 1: add to what `dst` holds (a later block of rows).
    pub accumulate: u32,
    /// First element of `dst`.
    pub dst_off: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<ColumnSumParams>() == 32);

bindings! {
    /// What one column sum binds.
    struct ColumnSumBuffers {
        params: Uniform<ColumnSumParams>,
        src: Read,
        dst: ReadWrite,
    }
}

/// Columns per workgroup (`WX` in the shader).
const COLUMNS: u32 = 64;

/// The column-sum pipeline for one source precision. Clones share it.
#[derive(Clone)]
pub struct ColumnSumKernel {
    kernel: Kernel,
}

impl ColumnSumKernel {
    pub fn new(ctx: &GpuContext, src: Precision) -> Self {
        ColumnSumKernel {
            kernel: Kernel::new_typed::<ColumnSumBuffers>(
                ctx,
                "column sum",
                include_str!("../../../shaders/column_sum.wgsl"),
                "main",
                &[("src_t", src)],
                &[],
            ),
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn bind(
        &self,
        ctx: &GpuContext,
        params: (&wgpu::Buffer, u64),
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.kernel
            .bind(ctx, &ColumnSumBuffers { params, src, dst })
    }

    /// Workgroups for `cols` columns.
    pub fn workgroups(cols: u32) -> (u32, u32, u32) {
        (cols.div_ceil(COLUMNS), 1, 1)
    }

    /// [`workgroups`](Self::workgroups), checked against the device limit.
    pub fn checked_workgroups(ctx: &GpuContext, cols: u32) -> Result<(u32, u32, u32)> {
        let groups = Self::workgroups(cols);
        check_groups(ctx, &format!("a column sum of {cols} columns"), &[groups.0])?;
        Ok(groups)
    }
}
