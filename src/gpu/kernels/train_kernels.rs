//! The small kernels of a training step: losses (`shaders/loss.wgsl`),
//! optimizers and clipping (`shaders/optim.wgsl`), and index-driven copies
//! (`shaders/gather.wgsl`). Their parameter structs mirror the WGSL ones.

use super::{Constants, FLAT_GROUP, FLAT_TILE, Kernel};
use crate::gpu::{GpuContext, Precision};

/// Mirrors `LossParams` in `shaders/loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub cols: u32,
    pub batch: u32,
    pub per_step: u32,
    pub has_ignore: u32,
    pub ignore_index: i32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<LossParams>() == 32);

/// Mirrors `OptParams` in `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptParams {
    pub len: u32,
    pub kind: u32,
    pub partial_off: u32,
    pub nesterov: u32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub partial_count: u32,
    pub growth_interval: u32,
    /// `clip_grad_value`: each gradient element is clamped to ±this after
    /// norm clipping; 0 = off.
    pub clip_value: f32,
    /// Gradient accumulation over N batches: 1/N, which `finalize` scales
    /// the summed gradients by.
    pub inv_accumulation: f32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<OptParams>() == 64);

/// Mirrors `GatherParams` in `shaders/gather.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub seq_len: u32,
    pub batch: u32,
    pub features: u32,
    pub vocab: u32,
    pub tokens: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<GatherParams>() == 32);

/// Mirrors `CastParams` in `shaders/cast.wgsl`: the leading field of a
/// tensor's [`OptParams`] entry, which the cast kernel shares.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CastParams {
    pub len: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<CastParams>() == 16);
const _: () = assert!(std::mem::offset_of!(OptParams, len) == 0);

/// Mirrors `DenseParams` in `shaders/dense.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DenseParams {
    /// rows · units.
    pub len: u32,
    /// 0 tanh, 1 relu.
    pub kind: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<DenseParams>() == 16);

/// Mirrors `TrainScalars` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TrainScalars {
    pub lr: f32,
    pub bias1: f32,
    pub bias2: f32,
    pub inv_count: f32,
    pub clip_max: f32,
    pub first: f32,
    pub step_index: u32,
    /// Loss scaling: 0 off, 1 static, 2 dynamic.
    pub scaling: u32,
    pub loss: f32,
    pub grad_norm: f32,
    pub clip_coef: f32,
    pub bad_step: u32,
    pub grad_scale: f32,
    pub growth_count: u32,
    pub skipped: u32,
    pub found_inf: u32,
}
const _: () = assert!(std::mem::size_of::<TrainScalars>() == 64);

impl TrainScalars {
    /// Bytes the host writes before a step (the inputs, not the outputs and
    /// not the GPU-owned loss-scale state after them).
    pub const HOST_BYTES: u64 = std::mem::offset_of!(TrainScalars, loss) as u64;
    /// f32 words in the struct, for reading it back.
    pub const WORDS: usize = std::mem::size_of::<TrainScalars>() / 4;
}

/// Sum-of-squares partials each gradient tensor contributes to the norm
/// (declared to `shaders/optim.wgsl` under the same name).
pub const PARTIALS_PER_TENSOR: u32 = 64;

bindings! {
    /// What a loss kernel (`mse`, `cross_entropy`, `finish`) binds.
    pub struct LossBuffers {
        params: Uniform<LossParams>,
        /// [rows, cols]
        pred: Read,
        /// [rows, cols] f32 values (MSE) and [rows] i32 classes (cross-entropy):
        /// the same buffer, read as the loss needs.
        target_f: Read,
        target_i: Read,
        /// \[B\] u32
        lengths: Read,
        /// [rows, cols]
        grad: ReadWrite,
        /// One share of the loss per workgroup.
        partials: ReadWrite,
        /// The `TrainScalars`.
        scalars: ReadWrite,
    }
}

bindings! {
    /// What an optimizer kernel (`sum_squares`, `clip`, `update`) binds for
    /// one parameter tensor.
    pub struct OptimBuffers {
        params: Uniform<OptParams>,
        param: ReadWrite,
        grad: Read,
        /// The momentum buffer, or Adam's m.
        m: ReadWrite,
        /// Adam's v (unused by SGD).
        v: ReadWrite,
        /// Sum-of-squares partials of every tensor.
        partials: ReadWrite,
        /// The `TrainScalars`.
        scalars: ReadWrite,
    }
}

bindings! {
    /// What a gather kernel (`last_step`, `embed` and their backward) binds.
    pub struct GatherBuffers {
        params: Uniform<GatherParams>,
        src: Read,
        dst: ReadWrite,
        /// Lengths \[B\] or tokens [T·B], u32.
        index: Read,
    }
}

bindings! {
    /// What the cast of one master tensor into its working copy binds.
    pub struct CastBuffers {
        params: Uniform<CastParams>,
        /// [len] f32 master weights.
        src: Read,
        /// [len] working copy, in the storage precision.
        dst: ReadWrite,
    }
}

bindings! {
    /// What a hidden dense layer's activation binds, forward or backward.
    pub struct DenseBuffers {
        params: Uniform<DenseParams>,
        /// z (forward) or the saved a (backward), [rows, units].
        src: Read,
        /// a (forward) or da, made dz in place (backward).
        dst: ReadWrite,
    }
}

/// The optimizer kernels' constants under their WGSL names.
const OPTIM_TILE: Constants<'static> = &[
    ("WG", FLAT_GROUP),
    ("PARTIALS_PER_TENSOR", PARTIALS_PER_TENSOR),
];

/// Every training kernel, built once.
pub struct TrainKernelSet {
    pub mse: Kernel,
    pub bce_with_logits: Kernel,
    pub cross_entropy: Kernel,
    pub loss_finish: Kernel,
    pub sum_squares: Kernel,
    pub clip: Kernel,
    /// Gradient accumulation: add a batch's gradients, then their mean.
    pub accumulate: Kernel,
    pub finalize: Kernel,
    pub update: Kernel,
    pub last_step: Kernel,
    pub last_step_backward: Kernel,
    pub embed: Kernel,
    pub embed_backward: Kernel,
    /// f32 master weights → the LSTM's working copy (f16 training only).
    pub cast: Kernel,
    /// A hidden dense layer's activation and its backward.
    pub dense_forward: Kernel,
    pub dense_backward: Kernel,
}

impl TrainKernelSet {
    /// The kernels, with `cast` narrowing to `precision`.
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        let loss = include_str!("../../../shaders/loss.wgsl");
        let optim = include_str!("../../../shaders/optim.wgsl");
        let gather = include_str!("../../../shaders/gather.wgsl");
        TrainKernelSet {
            mse: Kernel::new::<LossBuffers>(ctx, "mse loss", loss, "mse", FLAT_TILE),
            bce_with_logits: Kernel::new::<LossBuffers>(
                ctx,
                "binary cross-entropy loss",
                loss,
                "bce_with_logits",
                FLAT_TILE,
            ),
            cross_entropy: Kernel::new::<LossBuffers>(
                ctx,
                "cross-entropy loss",
                loss,
                "cross_entropy",
                FLAT_TILE,
            ),
            loss_finish: Kernel::new::<LossBuffers>(ctx, "loss sum", loss, "finish", FLAT_TILE),
            sum_squares: Kernel::new::<OptimBuffers>(
                ctx,
                "gradient sum of squares",
                optim,
                "sum_squares",
                OPTIM_TILE,
            ),
            clip: Kernel::new::<OptimBuffers>(ctx, "gradient clipping", optim, "clip", OPTIM_TILE),
            accumulate: Kernel::new::<OptimBuffers>(
                ctx,
                "gradient accumulation",
                optim,
                "accumulate",
                OPTIM_TILE,
            ),
            finalize: Kernel::new::<OptimBuffers>(
                ctx,
                "accumulated gradient mean",
                optim,
                "finalize",
                OPTIM_TILE,
            ),
            update: Kernel::new::<OptimBuffers>(
                ctx,
                "optimizer update",
                optim,
                "update",
                OPTIM_TILE,
            ),
            last_step: Kernel::new::<GatherBuffers>(
                ctx,
                "last valid step",
                gather,
                "last_step",
                FLAT_TILE,
            ),
            last_step_backward: Kernel::new::<GatherBuffers>(
                ctx,
                "last valid step backward",
                gather,
                "last_step_backward",
                FLAT_TILE,
            ),
            embed: Kernel::new::<GatherBuffers>(ctx, "embedding", gather, "embed", FLAT_TILE),
            embed_backward: Kernel::new::<GatherBuffers>(
                ctx,
                "embedding backward",
                gather,
                "embed_backward",
                FLAT_TILE,
            ),
            cast: Kernel::new_typed::<CastBuffers>(
                ctx,
                "master weights to working copy",
                include_str!("../../../shaders/cast.wgsl"),
                "main",
                &[("store_t", precision)],
                FLAT_TILE,
            ),
            dense_forward: Kernel::new::<DenseBuffers>(
                ctx,
                "hidden dense activation",
                include_str!("../../../shaders/dense.wgsl"),
                "forward",
                FLAT_TILE,
            ),
            dense_backward: Kernel::new::<DenseBuffers>(
                ctx,
                "hidden dense activation backward",
                include_str!("../../../shaders/dense.wgsl"),
                "backward",
                FLAT_TILE,
            ),
        }
    }
}

/// A 2-D grid of [`FLAT_GROUP`]-wide workgroups covering `total` invocations.
pub fn grid(ctx: &GpuContext, total: usize) -> (u32, u32, u32) {
    let groups = (total as u64).div_ceil(FLAT_GROUP as u64).max(1);
    let limit = ctx.limits().max_compute_workgroups_per_dimension as u64;
    let x = groups.min(limit);
    (x as u32, groups.div_ceil(x) as u32, 1)
}
