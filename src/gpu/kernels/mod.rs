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
//! the same source, never a copy of it. Constants that the host's workgroup
//! counts use too (the step kernels' tile shape, [`STEP_TILE`]) are declared
//! the same way, from the one Rust definition.

/// Declares a kernel's bindings once: a struct of the buffers it binds, in
/// binding order, each field with how the kernel uses it. The struct
/// implements [`BindingTable`], from which the kernel builds both its
/// bind-group layout ([`BindingTable::kinds`]) and each bind group
/// ([`BindingTable::resources`]).
///
/// - `Read`, `ReadWrite`: a storage buffer, bound whole (`&wgpu::Buffer`).
/// - `Uniform<T>`: `size_of::<T>()` bytes of a buffer from an offset
///   (`(&wgpu::Buffer, u64)`).
/// - `DynamicUniform<T>`: `size_of::<T>()` bytes of a buffer, at an offset
///   given with each dispatch (`&wgpu::Buffer`).
macro_rules! bindings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $kind:ident $(<$t:ty>)?,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy)]
        $vis struct $name<'a> {
            $($(#[$field_meta])* pub $field: binding_field!('a, $kind),)*
        }

        impl $crate::gpu::kernels::BindingTable for $name<'_> {
            fn kinds() -> Vec<$crate::gpu::kernels::Binding> {
                vec![$(binding_kind!($kind)),*]
            }

            fn resources(&self) -> Vec<wgpu::BindingResource<'_>> {
                vec![$(binding_resource!(self.$field, $kind $(<$t>)?)),*]
            }
        }
    };
}

/// The field type of one binding kind in [`bindings!`].
macro_rules! binding_field {
    ($a:lifetime, Uniform) => { (&$a wgpu::Buffer, u64) };
    ($a:lifetime, $kind:ident) => { &$a wgpu::Buffer };
}

/// The [`Binding`] of one binding kind in [`bindings!`].
macro_rules! binding_kind {
    (Read) => {
        $crate::gpu::kernels::Binding::Read
    };
    (ReadWrite) => {
        $crate::gpu::kernels::Binding::ReadWrite
    };
    (Uniform) => {
        $crate::gpu::kernels::Binding::Uniform { dynamic: false }
    };
    (DynamicUniform) => {
        $crate::gpu::kernels::Binding::Uniform { dynamic: true }
    };
}

/// What one field of a [`bindings!`] struct binds.
macro_rules! binding_resource {
    ($b:expr, Read) => {
        $b.as_entire_binding()
    };
    ($b:expr, ReadWrite) => {
        $b.as_entire_binding()
    };
    ($b:expr, Uniform<$t:ty>) => {
        $crate::gpu::kernels::slice($b.0, $b.1, std::mem::size_of::<$t>() as u64)
    };
    ($b:expr, DynamicUniform<$t:ty>) => {
        $crate::gpu::kernels::slice($b, 0, std::mem::size_of::<$t>() as u64)
    };
}

mod backward_step;
mod column_sum;
mod gemm;
mod hidden_projection;
mod layer_norm;
mod lstm_step;
mod mask;
mod permute;
mod train_kernels;

pub(crate) use backward_step::BackPipeline;
pub(crate) use backward_step::BackTile;
pub use backward_step::{BackwardBuffers, BackwardStepKernel};
pub use column_sum::{ColumnSumKernel, ColumnSumParams};
pub(crate) use gemm::{BoundGemm, GEMM_K_CHUNK};
pub use gemm::{
    GemmKernel, GemmKind, GemmLayout, GemmOp, GemmParams, GemmPlan, GemmRunner, GemmTile,
    GemmTypes, LstmGemms,
};
pub(crate) use hidden_projection::HiddenProjPipeline;
pub use hidden_projection::{
    HiddenProjBackwardBuffers, HiddenProjBackwardKernel, HiddenProjBuffers, HiddenProjKernel,
    hidden_proj_workgroups,
};
pub use layer_norm::{
    LayerNormKernels, LnBackBuffers, LnGradBuffers, LnInputBuffers, LnStepBuffers,
};
pub(crate) use lstm_step::wavefront_block;
pub use lstm_step::{
    StepBuffers, StepConfig, StepKernel, StepParams, StepPipelines, TrainBuffers, WavePipelines,
    WavefrontBuffers, WavefrontKernel,
};
pub use mask::{MaskKernel, MaskParams, SlotParams, ZeroSlotKernel};
pub use permute::{PermuteKernel, PermuteParams};
pub use train_kernels::{
    CastBuffers, DenseBuffers, DenseParams, GatherBuffers, GatherParams, LossBuffers, LossParams,
    OptParams, OptimBuffers, PARTIALS_PER_TENSOR, TrainKernelSet, TrainScalars, grid,
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

use crate::error::{LstmError, Result};
use crate::gpu::{GpuContext, Precision};

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// Storage buffers per shader stage that WebGPU guarantees: no kernel binds
/// more, so every kernel runs in a browser (`WGPU_LSTM_LIMITS=webgpu` opens
/// a device with exactly these limits).
pub(crate) const WEBGPU_STORAGE_BUFFERS: usize = 8;

/// How a kernel's binding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    Uniform { dynamic: bool },
    Read,
    ReadWrite,
}

/// A kernel's bindings, declared once with [`bindings!`]: how each binding
/// is used (the bind-group layout) and what it binds (the bind group), in
/// binding order. A pair binds its first table, then its second.
pub(crate) trait BindingTable {
    /// How each binding is used, in binding order.
    fn kinds() -> Vec<Binding>;
    /// What each binding binds, in binding order.
    fn resources(&self) -> Vec<wgpu::BindingResource<'_>>;
}

impl<A: BindingTable, B: BindingTable> BindingTable for (A, B) {
    fn kinds() -> Vec<Binding> {
        let mut kinds = A::kinds();
        kinds.extend(B::kinds());
        kinds
    }

    fn resources(&self) -> Vec<wgpu::BindingResource<'_>> {
        let mut resources = self.0.resources();
        resources.extend(self.1.resources());
        resources
    }
}

/// The storage-type aliases a kernel's source names, e.g. `("store_t", F16)`.
pub(crate) type TypeAliases<'a> = &'a [(&'static str, Precision)];

/// `u32` constants a kernel's source names, e.g. `("WG", 64)`, declared from
/// the Rust constants that the host's workgroup counts use too.
pub(crate) type Constants<'a> = &'a [(&'static str, u32)];

/// Projected units per workgroup of LSTMP's backward first half
/// (`lstm_proj_backward.wgsl`): `WG` in its WGSL. The forward step kernels'
/// launch shape is a [`StepTile`], the backward step kernel's a `BackTile`.
pub(crate) const STEP_UNITS: u32 = 64;
/// Batch rows per workgroup of those kernels: `RB` in their WGSL.
pub(crate) const STEP_ROWS: u32 = 4;
/// [`STEP_UNITS`] and [`STEP_ROWS`] under their WGSL names. They are `const`
/// declarations rather than pipeline `override`s because RB also sizes
/// function-scope arrays, which WGSL allows only for const-expressions.
pub(crate) const STEP_TILE: Constants<'static> = &[("WG", STEP_UNITS), ("RB", STEP_ROWS)];

/// Invocations per workgroup of the one-dimensional kernels (permute,
/// losses, optimizers, gathers, cast), which run over 2-D grids of such
/// workgroups: `WG` in their WGSL.
pub(crate) const FLAT_GROUP: u32 = 256;
/// [`FLAT_GROUP`] under its WGSL name.
pub(crate) const FLAT_TILE: Constants<'static> = &[("WG", FLAT_GROUP)];

/// The text put before `common.wgsl`: `enable f16;` if any alias is f16,
/// then one `alias name = type;` per alias and one `const name: u32 = v;`
/// per constant.
fn header(types: TypeAliases<'_>, constants: Constants<'_>) -> String {
    let mut header = String::new();
    if types.iter().any(|(_, p)| *p == Precision::F16) {
        header.push_str("enable f16;\n");
    }
    for (name, p) in types {
        header.push_str(&format!("alias {name} = {};\n", p.wgsl()));
    }
    for (name, value) in constants {
        header.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    header
}

/// Builds a compute pipeline from the type aliases and constants,
/// `common.wgsl` and `source`, at entry point `entry`, with one bind group
/// whose entries are `bindings` in order.
fn build_pipeline_entry(
    ctx: &GpuContext,
    label: &str,
    source: &str,
    entry: &str,
    bindings: &[Binding],
    types: TypeAliases<'_>,
    constants: Constants<'_>,
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let device = ctx.device();
    let header = header(types, constants);
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
fn bind_group(
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
    /// The layout's bindings, which every bind group must match.
    kinds: Vec<Binding>,
}

impl Kernel {
    /// A kernel whose bindings are the table `B` and whose source names
    /// constants by the names in `constants`.
    pub(crate) fn new<B: BindingTable>(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        constants: Constants<'_>,
    ) -> Self {
        Self::new_typed::<B>(ctx, label, source, entry, &[], constants)
    }

    /// [`new`](Self::new) for a source that names storage types by the
    /// aliases `types` and constants by the names in `constants`.
    pub(crate) fn new_typed<B: BindingTable>(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        types: TypeAliases<'_>,
        constants: Constants<'_>,
    ) -> Self {
        let kinds = B::kinds();
        let storage = kinds
            .iter()
            .filter(|k| matches!(k, Binding::Read | Binding::ReadWrite))
            .count();
        assert!(
            storage <= WEBGPU_STORAGE_BUFFERS,
            "kernel `{label}` binds {storage} storage buffers; WebGPU guarantees {WEBGPU_STORAGE_BUFFERS}"
        );
        let (pipeline, layout) =
            build_pipeline_entry(ctx, label, source, entry, &kinds, types, constants);
        Kernel {
            label,
            pipeline,
            layout,
            kinds,
        }
    }

    /// A bind group for `buffers`, a table of the kernel's own type.
    pub(crate) fn bind<B: BindingTable>(&self, ctx: &GpuContext, buffers: &B) -> wgpu::BindGroup {
        debug_assert_eq!(
            B::kinds(),
            self.kinds,
            "{}: another kernel's bindings",
            self.label
        );
        bind_group(ctx, self.label, &self.layout, buffers.resources())
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

/// The pipelines of a kernel whose tile sizes are WGSL consts: one per tile,
/// built on first use (a shape's tile is chosen from its batch and width,
/// so a model meets a handful).
pub(crate) struct TileCache<T, P> {
    built: Vec<(T, P)>,
}

impl<T: Copy + PartialEq, P: Clone> TileCache<T, P> {
    pub(crate) fn new() -> Self {
        TileCache { built: Vec::new() }
    }

    /// The pipeline of `tile`, from `build` the first time.
    pub(crate) fn get(&mut self, tile: T, build: impl FnOnce() -> P) -> P {
        if let Some((_, p)) = self.built.iter().find(|(t, _)| *t == tile) {
            return p.clone();
        }
        let p = build();
        self.built.push((tile, p.clone()));
        p
    }
}

/// One kernel's pipeline for one tile (clones share it): binds and encodes
/// with the per-step uniform at a dynamic offset.
#[derive(Clone)]
pub struct TilePipeline<T> {
    tile: T,
    kernel: Kernel,
}

impl<T: Copy> TilePipeline<T> {
    pub(crate) fn new(tile: T, kernel: Kernel) -> Self {
        TilePipeline { tile, kernel }
    }

    pub(crate) fn tile(&self) -> T {
        self.tile
    }

    pub(crate) fn bind<B: BindingTable>(&self, ctx: &GpuContext, buffers: &B) -> wgpu::BindGroup {
        self.kernel.bind(ctx, buffers)
    }

    pub(crate) fn encode(
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

/// Checks a dispatch's workgroup counts against the device limit.
pub(crate) fn check_groups(ctx: &GpuContext, what: &str, groups: &[u32]) -> Result<()> {
    let limit = ctx.limits().max_compute_workgroups_per_dimension;
    match groups.iter().max() {
        Some(&g) if g > limit => Err(LstmError::DeviceLimit {
            what: what.to_string(),
            limit: "max_compute_workgroups_per_dimension",
            requested: g as u64,
            available: limit as u64,
        }),
        _ => Ok(()),
    }
}
