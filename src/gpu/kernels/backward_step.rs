//! One step of backpropagation through time (`shaders/lstm_step_backward.wgsl`).

use super::{Binding, Kernel, StepParams, slice};
use crate::gpu::{GpuContext, Precision};

/// The buffers one layer's backward steps read and write.
pub struct BackwardBuffers<'a> {
    pub params: &'a wgpu::Buffer,
    pub gates: &'a wgpu::Buffer,
    pub c_saved: &'a wgpu::Buffer,
    pub c_0: &'a wgpu::Buffer,
    pub w_hh: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub d_gates: &'a wgpu::Buffer,
    pub dh_carry: &'a wgpu::Buffer,
    pub dc_carry: &'a wgpu::Buffer,
    pub lengths: &'a wgpu::Buffer,
    pub d_h0: &'a wgpu::Buffer,
    pub d_c0: &'a wgpu::Buffer,
    /// With a hidden projection: W_hr [D, P, H] and dh_t [T, B, D·P] from
    /// [`super::HiddenProjBackwardKernel`]; any buffers otherwise.
    pub w_hr: &'a wgpu::Buffer,
    pub dh_proj: &'a wgpu::Buffer,
}

pub struct BackwardStepKernel {
    kernel: Kernel,
}

impl BackwardStepKernel {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        use Binding::{Read, ReadWrite};
        let kernel = Kernel::new_typed(
            ctx,
            "lstm step backward",
            concat!(
                include_str!("../../../shaders/backward_common.wgsl"),
                include_str!("../../../shaders/lstm_step_backward.wgsl")
            ),
            "main",
            &[
                Binding::Uniform { dynamic: true },
                Read,
                Read,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
                ReadWrite,
                Read,
                ReadWrite,
                ReadWrite,
                Read,
                Read,
            ],
            &[("store_t", precision)],
        );
        BackwardStepKernel { kernel }
    }

    pub fn bind(&self, ctx: &GpuContext, b: &BackwardBuffers<'_>) -> wgpu::BindGroup {
        self.kernel.bind(
            ctx,
            vec![
                slice(b.params, 0, std::mem::size_of::<StepParams>() as u64),
                b.gates.as_entire_binding(),
                b.c_saved.as_entire_binding(),
                b.c_0.as_entire_binding(),
                b.w_hh.as_entire_binding(),
                b.dy.as_entire_binding(),
                b.d_gates.as_entire_binding(),
                b.dh_carry.as_entire_binding(),
                b.dc_carry.as_entire_binding(),
                b.lengths.as_entire_binding(),
                b.d_h0.as_entire_binding(),
                b.d_c0.as_entire_binding(),
                b.w_hr.as_entire_binding(),
                b.dh_proj.as_entire_binding(),
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
