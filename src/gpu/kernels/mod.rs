//! One Rust type per WGSL kernel. Each builds its pipeline and bind-group
//! layout once in `new()`; bind groups are built once per set of buffers.
//!
//! Shaders are `.wgsl` files under `shaders/`, compiled into the crate with
//! `include_str!`; `common.wgsl` is prepended to each.

mod gemm;
mod lstm_step;
mod permute;

pub use gemm::{GemmKernel, GemmOp, GemmParams};
pub use lstm_step::{StepBuffers, StepKernel, StepParams};
pub use permute::{PermuteKernel, PermuteParams};

use crate::gpu::GpuContext;

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// How a kernel's binding is used.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    Uniform { dynamic: bool },
    Read,
    ReadWrite,
}

/// Builds a compute pipeline from `common.wgsl` + `source`, with one bind
/// group whose entries are `bindings` in order.
pub(crate) fn build_pipeline(
    ctx: &GpuContext,
    label: &str,
    source: &str,
    bindings: &[Binding],
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let device = ctx.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{source}").into()),
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
        entry_point: Some("main"),
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
