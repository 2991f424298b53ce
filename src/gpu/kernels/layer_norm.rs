//! The layer-normalised LSTM's own kernels (`shaders/ln_*.wgsl`, each after
//! `shaders/ln_common.wgsl`): the input norm, the second dispatch of each
//! forward and backward step, and the layer's input-norm backward and
//! parameter gradients. The recurrent products are the plain step kernels'
//! (with `StepParams::ln`).

use super::{Constants, Kernel, StepParams};
use crate::error::Result;
use crate::gpu::GpuContext;

/// Invocations per workgroup of the row kernels (one workgroup per row of
/// 4H gates or H cells): `WG` in their WGSL, a power of two for the tree
/// reductions.
pub(crate) const LN_GROUP: u32 = 128;
const LN_TILE: Constants<'static> = &[("WG", LN_GROUP)];

const LN_COMMON: &str = include_str!("../../../shaders/ln_common.wgsl");

bindings! {
    /// What the input norm binds (`shaders/ln_input.wgsl`).
    pub struct LnInputBuffers {
        params: DynamicUniform<StepParams>,
        gates: ReadWrite,
        ln: Read,
        bias: Read,
        /// Training: the layer's saved rows (any buffer otherwise).
        saved: ReadWrite,
    }
}

bindings! {
    /// What a forward step's norm-and-cell dispatch binds (`shaders/ln_step.wgsl`).
    pub struct LnStepBuffers {
        params: DynamicUniform<StepParams>,
        gates_x: Read,
        ln: Read,
        state: ReadWrite,
        y: ReadWrite,
        lengths: Read,
        /// Training only (any distinct buffers otherwise).
        saved: ReadWrite,
        gates: ReadWrite,
        c: ReadWrite,
    }
}

bindings! {
    /// What a backward step's second dispatch binds (`shaders/ln_step_backward.wgsl`).
    pub struct LnBackBuffers {
        params: DynamicUniform<StepParams>,
        gates: Read,
        c_saved: Read,
        ln: Read,
        saved: ReadWrite,
        dh_in: Read,
        d_gates: ReadWrite,
        carries: ReadWrite,
        lengths: Read,
    }
}

bindings! {
    /// What the layer's gradient kernels bind (`shaders/ln_grads.wgsl`).
    pub struct LnGradBuffers {
        params: Uniform<StepParams>,
        ln: Read,
        saved: Read,
        d_gates: ReadWrite,
        ln_grad: ReadWrite,
        bias_grad: ReadWrite,
    }
}

/// The pipelines of the layer-normalised LSTM.
#[derive(Clone)]
pub struct LayerNormKernels {
    pub(crate) input: Kernel,
    pub(crate) input_train: Kernel,
    pub(crate) step: Kernel,
    pub(crate) step_train: Kernel,
    pub(crate) back: Kernel,
    pub(crate) input_back: Kernel,
    pub(crate) param_grads: Kernel,
}

impl LayerNormKernels {
    pub fn new(ctx: &GpuContext) -> Self {
        let input = format!(
            "{LN_COMMON}\n{}",
            include_str!("../../../shaders/ln_input.wgsl")
        );
        let step = format!(
            "{LN_COMMON}\n{}",
            include_str!("../../../shaders/ln_step.wgsl")
        );
        let back = format!(
            "{LN_COMMON}\n{}\n{}",
            include_str!("../../../shaders/backward_common.wgsl"),
            include_str!("../../../shaders/ln_step_backward.wgsl")
        );
        let grads = format!(
            "{LN_COMMON}\n{}",
            include_str!("../../../shaders/ln_grads.wgsl")
        );
        LayerNormKernels {
            input: Kernel::new::<LnInputBuffers>(ctx, "ln input", &input, "main", LN_TILE),
            input_train: Kernel::new::<LnInputBuffers>(
                ctx,
                "ln input (training)",
                &input,
                "main_train",
                LN_TILE,
            ),
            step: Kernel::new::<LnStepBuffers>(ctx, "ln step", &step, "main", LN_TILE),
            step_train: Kernel::new::<LnStepBuffers>(
                ctx,
                "ln step (training)",
                &step,
                "main_train",
                LN_TILE,
            ),
            back: Kernel::new::<LnBackBuffers>(ctx, "ln backward step", &back, "main", LN_TILE),
            input_back: Kernel::new::<LnGradBuffers>(
                ctx,
                "ln input backward",
                &grads,
                "input_backward",
                LN_TILE,
            ),
            param_grads: Kernel::new::<LnGradBuffers>(
                ctx,
                "ln parameter gradients",
                &grads,
                "param_grads",
                LN_TILE,
            ),
        }
    }

    /// One workgroup per row, `rows` of them, over a 2-D grid.
    pub fn row_groups(ctx: &GpuContext, rows: usize) -> Result<(u32, u32, u32)> {
        let limit = ctx.limits().max_compute_workgroups_per_dimension as u64;
        let rows = (rows as u64).max(1);
        let x = rows.min(limit);
        let y = rows.div_ceil(x);
        super::check_groups(ctx, "the layer norm's rows", &[y as u32])?;
        Ok((x as u32, y as u32, 1))
    }

    /// The parameter-gradient kernel's grid: one invocation per gate row of
    /// every direction.
    pub fn param_groups(ctx: &GpuContext, dirs: usize, hidden: usize) -> Result<(u32, u32, u32)> {
        Self::row_groups(ctx, (dirs * 4 * hidden).div_ceil(LN_GROUP as usize))
    }
}
