//! One Rust type per WGSL kernel. Each builds its pipeline and bind-group
//! layout once in `new()`; bind groups are built once per set of buffers.
//!
//! Shaders are `.wgsl` files under `shaders/`, compiled into the crate with
//! `include_str!`; `common.wgsl` is prepended to each.
//!
//! Kernels that store weights or activations in a precision chosen at run
//! time name their storage types by WGSL aliases (`store_t` in the step
//! kernels, `a_t`, `b_t`, `bias_t`, `c_t` in the GEMM). The alias
//! declarations, and `enable f16;` when one of them is f16, are prepended when
//! the pipeline is built (`Kernel::new_typed`); each alias is one variant of
//! the same source, never a copy of it.

mod backward_step;
mod gemm;
mod hidden_projection;
mod lstm_step;
mod permute;
mod train_kernels;

pub use backward_step::{BackwardBuffers, BackwardStepKernel};
pub use gemm::{GemmKernel, GemmOp, GemmParams, GemmRunner, GemmTypes, LstmGemms};
pub use hidden_projection::{
    HiddenProjBackwardBuffers, HiddenProjBackwardKernel, HiddenProjBuffers, HiddenProjKernel,
    hidden_proj_workgroups,
};
pub use lstm_step::{StepBuffers, StepKernel, StepParams, TrainBuffers};
pub use permute::{PermuteKernel, PermuteParams};
pub use train_kernels::{
    GatherParams, LossParams, OptParams, PARTIALS_PER_TENSOR, TrainKernelSet, TrainScalars, grid,
};

/// Mirrors `Dropout` in `shaders/common.wgsl`: the inter-layer dropout mask
/// of one layer's output (see [`crate::dropout`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    pub enabled: u32,
    pub threshold: u32,
    pub scale: f32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub layer: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<DropoutParams>() == 32);

impl DropoutParams {
    /// The mask on layer `layer`'s output for drop probability `p` (0 = off).
    pub fn new(p: f64, seed: u64, layer: usize) -> Self {
        if p <= 0.0 {
            return DropoutParams::default();
        }
        DropoutParams {
            enabled: 1,
            threshold: crate::dropout::keep_threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            layer: layer as u32,
            _pad: [0; 2],
        }
    }
}

use crate::gpu::{GpuContext, Precision};

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// How a kernel's binding is used.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    Uniform { dynamic: bool },
    Read,
    ReadWrite,
}

/// The storage-type aliases a kernel's source names, e.g. `("store_t", F16)`.
pub(crate) type TypeAliases<'a> = &'a [(&'static str, Precision)];

/// The text put before `common.wgsl`: `enable f16;` if any alias is f16,
/// then one `alias name = type;` per alias.
fn type_header(types: TypeAliases<'_>) -> String {
    let mut header = String::new();
    if types.iter().any(|(_, p)| *p == Precision::F16) {
        header.push_str("enable f16;\n");
    }
    for (name, p) in types {
        header.push_str(&format!("alias {name} = {};\n", p.wgsl()));
    }
    header
}

/// Builds a compute pipeline from the type aliases, `common.wgsl` and
/// `source`, at entry point `entry`, with one bind group whose entries are
/// `bindings` in order.
pub(crate) fn build_pipeline_entry(
    ctx: &GpuContext,
    label: &str,
    source: &str,
    entry: &str,
    bindings: &[Binding],
    types: TypeAliases<'_>,
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let device = ctx.device();
    let header = type_header(types);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(format!("{header}{COMMON}\n{source}").into()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Uniform { .. } => wgpu::BufferBindingType::Uniform,
                    Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: matches!(b, Binding::Uniform { dynamic: true }),
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = ctx.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    (pipeline, layout)
}

/// A binding of `size` bytes of `buffer` from `offset`.
pub(crate) fn slice(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: std::num::NonZeroU64::new(size),
    })
}

/// Builds a bind group whose entries are `resources` in binding order.
pub(crate) fn bind_group(
    ctx: &GpuContext,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    resources: Vec<wgpu::BindingResource<'_>>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// A compute kernel with one bind group: its pipeline and layout. The small
/// training kernels (losses, gathers, optimizers) are instances of this.
/// Clones share the pipeline.
#[derive(Clone)]
pub struct Kernel {
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    pub(crate) fn new(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        bindings: &[Binding],
    ) -> Self {
        Self::new_typed(ctx, label, source, entry, bindings, &[])
    }

    /// A kernel whose source names storage types by the aliases `types`.
    pub(crate) fn new_typed(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        bindings: &[Binding],
        types: TypeAliases<'_>,
    ) -> Self {
        let (pipeline, layout) = build_pipeline_entry(ctx, label, source, entry, bindings, types);
        Kernel {
            label,
            pipeline,
            layout,
        }
    }

    pub(crate) fn bind(
        &self,
        ctx: &GpuContext,
        resources: Vec<wgpu::BindingResource<'_>>,
    ) -> wgpu::BindGroup {
        bind_group(ctx, self.label, &self.layout, resources)
    }

    pub(crate) fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    ) {
        self.encode_at(ctx, pass, bind_group, &[], workgroups);
    }

    /// [`encode`](Self::encode) with dynamic uniform offsets.
    pub(crate) fn encode_at(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        offsets: &[u32],
        workgroups: (u32, u32, u32),
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, offsets);
        pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
        ctx.count_dispatch();
    }
}
