//! Training on the GPU: what the forward pass saves, and backpropagation
//! through time.
//!
//! Per layer, from the last down, the backward pass encodes T + 1 step
//! dispatches (`shaders/lstm_step_backward.wgsl`, both directions each), then
//! the weight gradients as GEMMs over all T·B rows:
//! dW_ih = dGᵀ·X (both directions at once), dW_hh = dGᵀ·H_prev (one per
//! direction, rows by unit), db = 1ᵀ·dG, and dX = dG·W_ih, the gradient of the layer
//! below's output. That is T + 4 + D dispatches per layer.
//!
//! With a hidden projection (`proj_size` P > 0) each backward step is two
//! dispatches (`shaders/lstm_proj_backward.wgsl` forms the P-wide dh_t, then
//! the cell kernel runs on dm_t = dh_t · W_hr), and one more GEMM per
//! direction gives dW_hr = dhᵀ·M from the saved m_t = o ⊙ tanh(c_t): 2T + 4 +
//! 2D dispatches per layer. H_prev, and so dW_hh, are P wide.
//!
//! A unidirectional stack without projection trains in a wavefront where its
//! buffers allow: the forward in T + L - 1 dispatches (`lstm_wavefront.wgsl`,
//! `main_train`), the backward in T + L (`lstm_step_backward.wgsl` with
//! `WAVE`, each layer below the top forming dy = dG_above · W_ih_above in
//! the step), then dW_ih, dW_hh and db per layer and layer 0's dX. Every
//! layer's saved activations and gate gradients are then one buffer each
//! ([L, T, B, ...]), which the GEMMs read at the layer's offset.
//!
//! The saved gates and h, and the gate gradients dG, are stored in the
//! engine's precision (f16 or f32); the saved c and m, dh, the carried dh
//! and dc and every parameter gradient are f32.

mod params;

use params::{BpttEntries, Gemm, Planned, bptt_uniforms, plan_gemms};

use crate::config::LstmConfig;
use crate::error::{LstmError, Result};
use crate::gpu::kernels::check_groups;
use crate::gpu::kernels::{
    BackPipeline, BackwardBuffers, ColumnSumKernel, GemmOp, HiddenProjBackwardBuffers,
    HiddenProjBackwardKernel, HiddenProjBuffers, Kernel, LstmGemms, PermuteKernel, StepBuffers,
    TrainBuffers, WavefrontBuffers,
};
use crate::gpu::kernels::{GemmKernel, MaskKernel, MaskParams, SlotParams, ZeroSlotKernel};
use crate::gpu::kernels::{
    LayerNormKernels, LnBackBuffers, LnGradBuffers, LnInputBuffers, LnStepBuffers,
};
use crate::gpu::lstm::gru;
use crate::gpu::lstm::masks::MaskLayout;
use crate::gpu::tensor::{TENSOR_USAGE, byte_size, byte_size_in};
use crate::gpu::workspace::{GpuLayer, Uniforms, Workspace, forward_gemm, gemm_entry};
use crate::gpu::{GpuContext, GpuTensor, Precision};

/// One backward product (a GEMM, or the bias gradient's column sum): its
/// pipeline, bind group and workgroup counts.
pub(super) type GemmDispatch = (Kernel, wgpu::BindGroup, (u32, u32, u32));

/// Byte offsets of the regions of [`BpttSpace::carries`], in the order
/// `shaders/backward_common.wgsl` computes them: dh carry [2, L·D, B, H_out]
/// (by step parity), dh_0 [L·D, B, H_out], dc carry [L·D, B, H], dc_0
/// [L·D, B, H], c_0 [L·D, B, H].
#[derive(Clone, Copy, Debug)]
pub(in crate::gpu) struct Carries {
    pub dh: u64,
    pub d_h0: u64,
    pub dc: u64,
    pub d_c0: u64,
    pub c0: u64,
    pub len: u64,
}

impl Carries {
    /// For `h_len` elements of h ([L·D, B, H_out]) and `c_len` of c.
    fn new(h_len: usize, c_len: usize) -> Self {
        let (h, c) = (4 * h_len as u64, 4 * c_len as u64);
        Carries {
            dh: 0,
            d_h0: 2 * h,
            dc: 3 * h,
            d_c0: 3 * h + c,
            c0: 3 * h + 2 * c,
            len: 3 * h + 3 * c,
        }
    }
}

/// Saved activations and backward scratch for one (T, B).
pub(in crate::gpu) struct BpttSpace {
    /// Per layer [T, B, D, H, 4]: activated gates i, f, g, o (storage
    /// precision). In a wavefront this and the next two are one buffer
    /// each, [L, T, B, H, ...].
    gates: Vec<wgpu::Buffer>,
    /// Per layer [T, B, D, H]: c after each step (f32).
    c_saved: Vec<wgpu::Buffer>,
    /// Per layer [T, B, D·H_out]: h entering each step (storage precision).
    h_prev: Vec<wgpu::Buffer>,
    /// With a hidden projection, per layer [T, B, D·H]: m_t = o ⊙ tanh(c_t) (f32).
    m_saved: Vec<wgpu::Buffer>,
    /// With a hidden projection, [T, B, D·P]: dh_t of the current layer (f32).
    _dh_proj: Option<wgpu::Buffer>,
    /// [T·B, D·4H]: gate gradients of the current layer (storage
    /// precision); in a wavefront [L, T·B, 4H], every layer's.
    _d_gates: wgpu::Buffer,
    /// [T, B, D·H_out]: gradient of the current layer's output.
    pub dy: GpuTensor,
    /// [B, T, D·H_out] and [B, T, I]: batch-first d_output and d_input.
    pub batch_first: Option<(GpuTensor, GpuTensor)>,
    /// [T, B, I]
    pub d_input: GpuTensor,
    /// The gradients carried between backward steps, dh_0 and dc_0 as the
    /// steps finish them, and the forward's c_0, in one buffer (one binding).
    pub carries: wgpu::Buffer,
    /// Where each region of `carries` starts.
    pub at: Carries,
    /// [L·D, B, H_out] and [L·D, B, H]: copied out of `carries` after the
    /// last backward step.
    pub d_h0: GpuTensor,
    pub d_c0: GpuTensor,
    _ones: wgpu::Buffer,
    pub uniforms: wgpu::Buffer,
    pub layout: Uniforms,
    /// Where each entry of `uniforms` sits.
    entries: BpttEntries,
    /// Per layer: the backward products as they run.
    plans: Vec<Vec<(Gemm, Planned)>>,
    /// The slices of the products whose K is split (f32).
    _split_workspace: Option<wgpu::Buffer>,
    /// The dropout seed the uniforms hold.
    seed: u64,
    /// The wavefront training of a unidirectional stack (its forward and
    /// backward dispatches); the per-layer saved buffers are then one
    /// buffer each holding every layer, and `steps` and `back` are empty.
    pub wave: Option<BpttWave>,
    /// Per layer: the training step's and the backward step's bind groups.
    pub steps: Vec<wgpu::BindGroup>,
    pub back: Vec<wgpu::BindGroup>,
    /// The backward step pipeline, and its workgroups for one step.
    pub back_kernel: BackPipeline,
    pub back_groups: (u32, u32, u32),
    /// With a hidden projection, per layer: the forward hidden projection's and the
    /// backward dh_t kernel's bind groups (empty otherwise).
    pub hidden_projs: Vec<wgpu::BindGroup>,
    pub hidden_proj_back: Vec<wgpu::BindGroup>,
    /// Per layer: dW_ih, dW_hh per direction, db (with bias), dX, dW_hr per
    /// direction (with a hidden projection), each with the GEMM variant for its
    /// operand types.
    pub gemms: Vec<Vec<GemmDispatch>>,
    pub permutes: Option<[(wgpu::BindGroup, (u32, u32)); 2]>,
    /// With input dropout, per layer: the masked input and how it is made.
    pub input_masks: Vec<InputMask>,
    /// The dropout seed whose variational masks the lengths buffer holds.
    masks_seed: Option<u64>,
    /// A GRU's slot-clearing parameters, one buffer per dispatch.
    _slot_params: Vec<wgpu::Buffer>,
    /// A layer-normalised LSTM's dispatches.
    pub ln: Option<LnTrain>,
}

/// Input dropout on one layer (training): its input X is copied to `x` and
/// masked in place (`mask_rows.wgsl`), the input projection reads X̃ = X ⊙
/// m_x, and so does dW_ih; the backward pass masks dX = dG · W_ih in place
/// after its GEMM (one of the layer's `gemms`).
pub(in crate::gpu) struct InputMask {
    /// [T, B, in]: X̃.
    pub x: wgpu::Buffer,
    _params: wgpu::Buffer,
    /// The masking dispatch on `x`.
    pub forward: GemmDispatch,
    /// The input projection G = X̃ · W_ihᵀ + b.
    pub projection: (GemmKernel, wgpu::BindGroup, (u32, u32, u32)),
}

/// The wavefront training of a unidirectional stack of L layers: the
/// forward in T + L - 1 dispatches (`lstm_wavefront.wgsl`, `main_train`) and
/// the backward in T + L (`lstm_step_backward.wgsl` with `WAVE`), each
/// dispatch running one step of every layer in the wave.
pub(in crate::gpu) struct BpttWave {
    pub forward: wgpu::BindGroup,
    pub backward: wgpu::BindGroup,
    pub back_kernel: BackPipeline,
    /// Workgroups of one backward dispatch (z = layer).
    pub back_groups: (u32, u32, u32),
}

/// The kernels training binds.
pub(super) struct BpttKernels<'a> {
    pub gemms: &'a LstmGemms,
    /// The backward step pipeline of this shape's tile.
    pub back: BackPipeline,
    /// The bias gradient's column sum, for the gate gradients' precision.
    pub column_sum: &'a ColumnSumKernel,
    /// The f32 column sum that adds a split product's slices.
    pub split_sum: &'a ColumnSumKernel,
    /// For a stack with a wavefront forward: the backward wavefront
    /// pipeline of this shape's tile, and the packed weights.
    pub wave_back: Option<(BackPipeline, &'a wgpu::Buffer)>,
    pub permute: &'a PermuteKernel,
    /// With a hidden projection.
    pub hidden_proj: Option<&'a HiddenProjBackwardKernel>,
    /// With input dropout.
    pub mask: Option<&'a MaskKernel>,
    /// For a GRU: clears its padded slots' gradients.
    pub zero_slot: Option<&'a ZeroSlotKernel>,
    /// For a layer-normalised LSTM.
    pub layer_norm: Option<&'a LayerNormKernels>,
}

/// A layer-normalised LSTM's training dispatches, per layer: the input
/// norm (saving its rows), each forward step's and backward step's second
/// dispatch, and the layer's gradient kernels, with the buffer of what the
/// forward saves and the backward steps' per-row gradients
/// (`shaders/ln_common.wgsl`).
pub(in crate::gpu) struct LnTrain {
    pub input: Vec<wgpu::BindGroup>,
    pub steps: Vec<wgpu::BindGroup>,
    pub back: Vec<wgpu::BindGroup>,
    /// Per layer [14·N·H + 3·N] f32 for N = T·B·D rows.
    saved: Vec<wgpu::Buffer>,
}

impl BpttSpace {
    pub(super) fn build(
        ctx: &GpuContext,
        cfg: &LstmConfig,
        weights: &[GpuLayer],
        grads: &[GpuLayer],
        ws: &Workspace,
        k: BpttKernels<'_>,
    ) -> Result<Self> {
        let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
        let (hout, proj) = (cfg.hidden_out(), cfg.proj_size);
        let (t, b) = (ws.seq_len, ws.batch);
        let buffer = |label: &str, shape: &[usize]| -> Result<wgpu::Buffer> {
            ctx.create_buffer(label, byte_size(label, shape)?, TENSOR_USAGE)
        };
        let precision = weights[0].precision;
        let stored = |label: &str, shape: &[usize], p: Precision| -> Result<wgpu::Buffer> {
            ctx.create_buffer(label, byte_size_in(label, shape, p)?, TENSOR_USAGE)
        };
        let per_layer = |label: &str, shape: &[usize], p| -> Result<Vec<wgpu::Buffer>> {
            (0..layers)
                .map(|l| stored(&format!("{label} l{l}"), shape, p))
                .collect()
        };
        // A stack with a wavefront forward trains in a wavefront too when
        // every layer's saved activations and gate gradients fit one
        // binding each; otherwise layer by layer.
        // (Variational dropout trains layer by layer: the wavefront kernels
        // do not read its masks.)
        let packed = match (&ws.wave, &k.wave_back) {
            (Some(_), Some(_)) if !cfg.variational() => {
                let all = |label: &str, shape: &[usize], p| match stored(label, shape, p) {
                    Ok(buffer) => Ok(Some(buffer)),
                    Err(LstmError::DeviceLimit { .. }) => Ok(None),
                    Err(e) => Err(e),
                };
                let bufs = [
                    all("saved gates [L,T,B,H,4]", &[layers, t, b, h, 4], precision)?,
                    all("saved c [L,T,B,H]", &[layers, t, b, h], Precision::F32)?,
                    all("saved h_prev [L,T,B,H]", &[layers, t, b, h], precision)?,
                    all("d_gates [L,T·B,4H]", &[layers, t * b, 4 * h], precision)?,
                ];
                match bufs {
                    [Some(g), Some(c), Some(hp), Some(dg)] => Some((g, c, hp, dg)),
                    _ => None,
                }
            }
            _ => None,
        };
        let wave_on = packed.is_some();
        let (gates, c_saved, h_prev, packed_d_gates) = match packed {
            Some((g, c, hp, dg)) => (vec![g], vec![c], vec![hp], Some(dg)),
            None => (
                per_layer("saved gates [T,B,D,H,4]", &[t, b, dirs, h, 4], precision)?,
                per_layer("saved c [T,B,D,H]", &[t, b, dirs, h], Precision::F32)?,
                per_layer(
                    "saved h_prev [T,B,D·H_out]",
                    &[t, b, dirs * hout],
                    precision,
                )?,
                None,
            ),
        };
        let (m_saved, dh_proj) = if proj > 0 {
            (
                per_layer("saved m [T,B,D·H]", &[t, b, dirs * h], Precision::F32)?,
                Some(buffer("dh [T,B,D·P]", &[t, b, dirs * proj])?),
            )
        } else {
            (Vec::new(), None)
        };
        let state = [layers * dirs, b, h];
        let h_state = [layers * dirs, b, hout];
        let d_gates = match packed_d_gates {
            Some(dg) => dg,
            None => stored("d_gates [T·B, D·4H]", &[t * b, dirs * 4 * h], precision)?,
        };
        let dy = GpuTensor::empty(ctx, "dy [T,B,D·H_out]", &[t, b, dirs * hout])?;
        let d_input = GpuTensor::empty(ctx, "d_input [T,B,I]", &[t, b, cfg.input_size])?;
        let batch_first = if cfg.batch_first {
            Some((
                GpuTensor::empty(ctx, "d_output [B,T,D·H_out]", &[b, t, dirs * hout])?,
                GpuTensor::empty(ctx, "d_input [B,T,I]", &[b, t, cfg.input_size])?,
            ))
        } else {
            None
        };
        let at = Carries::new(layers * dirs * b * hout, layers * dirs * b * h);
        let carries = buffer(
            "carries: dh [2,L·D,B,H_out], dh_0, dc [L·D,B,H], dc_0, c_0",
            &[at.len as usize / 4],
        )?;
        let d_h0 = GpuTensor::empty(ctx, "d_h_0", &h_state)?;
        let d_c0 = GpuTensor::empty(ctx, "d_c_0", &state)?;
        let ones = buffer("ones [T·B]", &[t * b])?;
        ctx.queue()
            .write_buffer(&ones, 0, bytemuck::cast_slice(&vec![1.0f32; t * b]));

        let entries = BpttEntries::new(cfg, t, b, wave_on);
        let plans = plan_gemms(ctx, k.gemms, cfg, weights, t * b, wave_on)?;
        let layout = bptt_uniforms(ctx, cfg, &plans, &entries, t, b, 0);
        let workspace_len = plans
            .iter()
            .flatten()
            .map(|(_, p)| match p {
                Planned::Gemm(g) => g.workspace_len(),
                Planned::Sum(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let split_workspace = match workspace_len {
            0 => None,
            n => Some(buffer("split-K slices", &[n])?),
        };
        let uniforms = ctx.create_buffer(
            "training uniforms",
            layout.bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue().write_buffer(&uniforms, 0, &layout.bytes);

        let mut steps = Vec::new();
        let mut back = Vec::new();
        let mut hidden_projs = Vec::new();
        let mut hidden_proj_back = Vec::new();
        let mut gemms = Vec::new();
        let mask_layout = MaskLayout::new(cfg, b);
        let mut input_masks = Vec::new();
        let mut slot_params = Vec::new();
        let mut ln_train = match k.layer_norm {
            Some(_) => Some(LnTrain {
                input: Vec::new(),
                steps: Vec::new(),
                back: Vec::new(),
                saved: per_layer(
                    "layer-norm rows",
                    &[14 * t * b * dirs * h + 3 * t * b * dirs],
                    Precision::F32,
                )?,
            }),
            None => None,
        };
        for (l, (w, g)) in weights.iter().zip(grads).enumerate() {
            // Input dropout: X̃ = X ⊙ m_x, made by the forward pass.
            let input_mask = match k.mask {
                Some(mask) if mask_layout.input[l] != 0 => {
                    let cols = cfg.layer_input_size(l);
                    let x = buffer(&format!("masked input l{l} [T,B,in]"), &[t, b, cols])?;
                    let params = ctx.create_buffer(
                        "input mask params",
                        std::mem::size_of::<MaskParams>() as u64,
                        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    )?;
                    let mp = MaskParams {
                        batch: b as u32,
                        cols: cols as u32,
                        total: (t * b * cols) as u32,
                        offset: mask_layout.input[l],
                    };
                    ctx.queue()
                        .write_buffer(&params, 0, bytemuck::bytes_of(&mp));
                    let groups = MaskKernel::workgroups(ctx, t * b * cols);
                    check_groups(ctx, "the input mask", &[groups.0, groups.1])?;
                    let (proj_kernel, _, proj_groups) = &ws.gemm[l];
                    let op = GemmOp {
                        params: forward_gemm(cfg, w, t * b),
                        a: &x,
                        b: &w.w_ih,
                        bias: &w.bias,
                        c: &ws.gates,
                    };
                    let at = ws.layout.offset(gemm_entry(l)) as u64;
                    let projection = (
                        proj_kernel.clone(),
                        proj_kernel.bind(ctx, &op, &ws._uniforms, at),
                        *proj_groups,
                    );
                    let forward = (
                        mask.kernel().clone(),
                        mask.bind(ctx, &params, &x, &ws.lengths),
                        groups,
                    );
                    Some((x, params, forward, projection, mask, groups))
                }
                _ => None,
            };
            // With a hidden projection the step kernel writes m_t, which is saved;
            // the hidden-projection kernel writes the layer output.
            let step_y = m_saved.get(l).unwrap_or(&ws.ys[l].buffer);
            if !wave_on {
                steps.push(ws.step.bind(
                    ctx,
                    &StepBuffers {
                        params: &uniforms,
                        gates_x: &ws.gates,
                        w_hh: &w.w_hh,
                        state: &ws.state,
                        y: step_y,
                        lengths: &ws.lengths,
                    },
                    Some(&TrainBuffers {
                        gates: &gates[l],
                        c: &c_saved[l],
                        h_prev: &h_prev[l],
                    }),
                ));
                back.push(k.back.bind(
                    ctx,
                    &BackwardBuffers {
                        params: &uniforms,
                        gates: &gates[l],
                        c_saved: &c_saved[l],
                        w_hh: &w.w_hh,
                        dh_in: dh_proj.as_ref().unwrap_or(&dy.buffer),
                        d_gates: &d_gates,
                        carries: &carries,
                        lengths: &ws.lengths,
                        w_hr: w.w_hr.as_ref().unwrap_or(&w.w_hh),
                    },
                ));
            }
            if let (Some(lk), Some(lt)) = (k.layer_norm, &mut ln_train) {
                let ln = w.ln.as_ref().expect("layer-norm parameters");
                let saved = &lt.saved[l];
                lt.input.push(lk.input_train.bind(
                    ctx,
                    &LnInputBuffers {
                        params: &uniforms,
                        gates: &ws.gates,
                        ln,
                        bias: &w.bias,
                        saved,
                    },
                ));
                lt.steps.push(lk.step_train.bind(
                    ctx,
                    &LnStepBuffers {
                        params: &uniforms,
                        gates_x: &ws.gates,
                        ln,
                        state: &ws.state,
                        y: step_y,
                        lengths: &ws.lengths,
                        saved,
                        gates: &gates[l],
                        c: &c_saved[l],
                    },
                ));
                lt.back.push(lk.back.bind(
                    ctx,
                    &LnBackBuffers {
                        params: &uniforms,
                        gates: &gates[l],
                        c_saved: &c_saved[l],
                        ln,
                        saved,
                        dh_in: &dy.buffer,
                        d_gates: &d_gates,
                        carries: &carries,
                        lengths: &ws.lengths,
                    },
                ));
            }
            if let (Some(fwd), Some(bwd), Some(w_hr), Some(dh)) =
                (&ws.hidden_proj, k.hidden_proj, &w.w_hr, &dh_proj)
            {
                hidden_projs.push(fwd.bind(
                    ctx,
                    &HiddenProjBuffers {
                        params: &uniforms,
                        m: &m_saved[l],
                        w_hr,
                        h_state: &ws.state,
                        y: &ws.ys[l].buffer,
                        lengths: &ws.lengths,
                    },
                ));
                hidden_proj_back.push(bwd.bind(
                    ctx,
                    &HiddenProjBackwardBuffers {
                        params: &uniforms,
                        d_gates: &d_gates,
                        w_hh: &w.w_hh,
                        dy: &dy.buffer,
                        lengths: &ws.lengths,
                        dh,
                        carries: &carries,
                    },
                ));
            }
            // A wavefront's layer reads the layer below's output from the
            // packed outputs (the GEMM's offset), and needs no dX GEMM above
            // layer 0: the backward steps fuse it.
            let x = match (l, &ws.wave, &input_mask) {
                (_, _, Some((masked, ..))) => masked,
                (0, _, _) => &ws.input.buffer,
                (_, Some(wave), _) if wave_on => &wave.outputs,
                _ => &ws.ys[l - 1].buffer,
            };
            let dx = if l == 0 { &d_input.buffer } else { &dy.buffer };
            // A wavefront's saved h of every layer is one buffer.
            let saved_h = &h_prev[if wave_on { 0 } else { l }];
            let mut layer_gemms = Vec::new();
            // A layer-normalised LSTM's dW_hh reads dR from d_gates first;
            // then its gradient kernels replace dR with dA there for dW_ih
            // and dX, and sum the biases' and the norms' parameter
            // gradients (so it has no bias column sum).
            let mut recurrent_first = Vec::new();
            for (which, (kind, planned)) in plans[l].iter().enumerate() {
                // A wavefront's layers above 0 need no dX GEMM: the backward
                // steps fuse it.
                if wave_on && l > 0 && matches!(kind, Gemm::Input) {
                    continue;
                }
                if cfg.layer_norm && matches!(kind, Gemm::Bias) {
                    continue;
                }
                let layer_gemms = if cfg.layer_norm && matches!(kind, Gemm::WeightHh) {
                    &mut recurrent_first
                } else {
                    &mut layer_gemms
                };
                let offset = layout.offset(entries.gemm(l, which)) as u64;
                let plan = match planned {
                    Planned::Sum(sum) => {
                        // The bias gradient: a column sum of dG (the uniform
                        // holds its parameters).
                        let bg = k
                            .column_sum
                            .bind(ctx, (&uniforms, offset), &d_gates, &g.bias);
                        let groups = ColumnSumKernel::workgroups(sum.cols);
                        layer_gemms.push((k.column_sum.kernel().clone(), bg, groups));
                        continue;
                    }
                    Planned::Gemm(plan) => plan,
                };
                let (a, bm, c) = match kind {
                    Gemm::WeightIh => (&d_gates, x, &g.w_ih),
                    Gemm::WeightHh => (&d_gates, saved_h, &g.w_hh),
                    Gemm::Input => (&d_gates, &w.w_ih, dx),
                    Gemm::WeightHr => (
                        dh_proj.as_ref().expect("a hidden projection"),
                        &m_saved[l],
                        g.w_hr.as_ref().expect("a hidden projection"),
                    ),
                    Gemm::Bias => unreachable!("planned as a column sum"),
                };
                // A split product writes its slices to the workspace, and a
                // column sum adds them into C.
                let slices = match &plan.sum {
                    Some(_) => split_workspace.as_ref().expect("a split-K workspace"),
                    None => c,
                };
                let op = GemmOp {
                    params: plan.params,
                    a,
                    b: bm,
                    bias: a,
                    c: slices,
                };
                let groups = plan.kernel.workgroups(ctx, &plan.params)?;
                let bind_group = plan.kernel.bind(ctx, &op, &uniforms, offset);
                layer_gemms.push((plan.kernel.kernel().clone(), bind_group, groups));
                if let Some(sum) = &plan.sum {
                    let at = layout.offset(entries.gemm_sum(l, which)) as u64;
                    let bg = k.split_sum.bind(ctx, (&uniforms, at), slices, c);
                    let groups = ColumnSumKernel::checked_workgroups(ctx, sum.cols)?;
                    layer_gemms.push((k.split_sum.kernel().clone(), bg, groups));
                }
                // Input dropout: the layer below receives dX ⊙ m_x.
                if let (Gemm::Input, Some((_, params, _, _, mask, groups))) = (kind, &input_mask) {
                    let bg = mask.bind(ctx, params, dx, &ws.lengths);
                    layer_gemms.push((mask.kernel().clone(), bg, *groups));
                }
            }
            // A GRU's padded slots (`gru.rs`) get gradients the model does
            // not have: clear them, so that the optimizer leaves them at 0.
            if let Some(zero) = k.zero_slot {
                let n = (dirs * 4 * h) as u32;
                for (buffer, cols, slot, offset) in [
                    (&g.w_ih, w.input_size as u32, gru::IH_PAD, 0),
                    (&g.w_hh, hout as u32, gru::HH_PAD, 0),
                    (&g.bias, 1, gru::IH_PAD, 0),
                    (&g.bias, 1, gru::HH_PAD, n),
                ] {
                    let p = SlotParams {
                        rows: n,
                        cols,
                        slot: slot as u32,
                        offset,
                    };
                    let params = ctx.create_buffer(
                        "padded slot params",
                        std::mem::size_of::<SlotParams>() as u64,
                        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    )?;
                    ctx.queue().write_buffer(&params, 0, bytemuck::bytes_of(&p));
                    let groups = ZeroSlotKernel::workgroups(ctx, &p);
                    check_groups(ctx, "a padded slot", &[groups.0, groups.1])?;
                    let bg = zero.bind(ctx, (&params, 0), buffer);
                    layer_gemms.push((zero.kernel().clone(), bg, groups));
                    slot_params.push(params);
                }
            }
            if let (Some(lk), Some(lt)) = (k.layer_norm, &ln_train) {
                let at = layout.offset(entries.back(l, 0)) as u64;
                let bind = |kernel: &Kernel| {
                    kernel.bind(
                        ctx,
                        &LnGradBuffers {
                            params: (&uniforms, at),
                            ln: w.ln.as_ref().expect("layer-norm parameters"),
                            saved: &lt.saved[l],
                            d_gates: &d_gates,
                            ln_grad: g.ln.as_ref().expect("layer-norm gradients"),
                            bias_grad: &g.bias,
                        },
                    )
                };
                recurrent_first.push((
                    lk.input_back.clone(),
                    bind(&lk.input_back),
                    LayerNormKernels::row_groups(ctx, t * b * dirs)?,
                ));
                recurrent_first.push((
                    lk.param_grads.clone(),
                    bind(&lk.param_grads),
                    LayerNormKernels::param_groups(ctx, dirs, h)?,
                ));
                recurrent_first.append(&mut layer_gemms);
                layer_gemms = recurrent_first;
            }
            gemms.push(layer_gemms);
            if let Some((x, params, forward, projection, ..)) = input_mask {
                input_masks.push(InputMask {
                    x,
                    _params: params,
                    forward,
                    projection,
                });
            }
        }
        let permutes = match &batch_first {
            Some((d_out_bf, d_in_bf)) => {
                let at = |w| (&uniforms, layout.offset(entries.permute(w)) as u64);
                Some([
                    (
                        k.permute.bind(ctx, at(0), &d_out_bf.buffer, &dy.buffer),
                        PermuteKernel::workgroups(ctx, t * b * dirs * hout),
                    ),
                    (
                        k.permute.bind(ctx, at(1), &d_input.buffer, &d_in_bf.buffer),
                        PermuteKernel::workgroups(ctx, t * b * cfg.input_size),
                    ),
                ])
            }
            None => None,
        };
        let back_groups = k
            .back
            .tile()
            .workgroups(cfg.hidden_size, ws.batch, cfg.num_directions());
        check_groups(ctx, "a backward step", &[back_groups.0, back_groups.1])?;
        let wave = match (&ws.wave, &k.wave_back) {
            (Some(fwd), Some((back_kernel, weights))) if wave_on => Some(BpttWave {
                forward: fwd.pipelines.train.bind(
                    ctx,
                    &(
                        WavefrontBuffers {
                            params: &uniforms,
                            gates_x: &ws.gates,
                            weights,
                            state: &ws.state,
                            outputs: &fwd.outputs,
                            lengths: &ws.lengths,
                        },
                        TrainBuffers {
                            gates: &gates[0],
                            c: &c_saved[0],
                            h_prev: &h_prev[0],
                        },
                    ),
                ),
                backward: back_kernel.bind(
                    ctx,
                    &BackwardBuffers {
                        params: &uniforms,
                        gates: &gates[0],
                        c_saved: &c_saved[0],
                        w_hh: weights,
                        dh_in: &dy.buffer,
                        d_gates: &d_gates,
                        carries: &carries,
                        lengths: &ws.lengths,
                        w_hr: weights,
                    },
                ),
                back_kernel: back_kernel.clone(),
                back_groups: back_kernel.tile().workgroups(h, b, layers),
            }),
            _ => None,
        };
        ctx.check()?;
        Ok(BpttSpace {
            gates,
            c_saved,
            h_prev,
            m_saved,
            _dh_proj: dh_proj,
            _d_gates: d_gates,
            dy,
            batch_first,
            d_input,
            carries,
            at,
            d_h0,
            d_c0,
            _ones: ones,
            uniforms,
            layout,
            entries,
            plans,
            _split_workspace: split_workspace,
            seed: 0,
            steps,
            back,
            back_kernel: k.back.clone(),
            back_groups,
            wave,
            hidden_projs,
            hidden_proj_back,
            gemms,
            permutes,
            input_masks,
            masks_seed: None,
            _slot_params: slot_params,
            ln: ln_train,
        })
    }

    /// Where the last layer's saved cell states [T, B, D, H] (c after each
    /// step, carried through padding) sit: the buffer and byte offset, of
    /// `bytes` bytes each layer.
    pub fn last_cells(&self, layers: usize, bytes: u64) -> (&wgpu::Buffer, u64) {
        match self.c_saved.len() {
            // A wavefront's layers are one buffer [L, T, B, H].
            1 if layers > 1 => (&self.c_saved[0], (layers as u64 - 1) * bytes),
            _ => (self.c_saved.last().expect("a layer"), 0),
        }
    }

    /// Bytes allocated for the activations saved for the backward pass:
    /// every layer's gates, c and h_prev (and m with a hidden projection).
    pub fn saved_bytes(&self) -> u64 {
        self.gates
            .iter()
            .chain(&self.c_saved)
            .chain(&self.h_prev)
            .chain(&self.m_saved)
            .chain(self.ln.iter().flat_map(|ln| &ln.saved))
            .map(|b| b.size())
            .sum()
    }

    /// Rewrites the per-pass parameters for a new dropout seed. Without
    /// inter-layer dropout, or for the seed already written, nothing depends
    /// on it and nothing is written.
    /// With variational dropout, also draws that seed's masks into the
    /// lengths buffer `lengths` (after its B lengths).
    pub fn set_seed(
        &mut self,
        ctx: &GpuContext,
        cfg: &LstmConfig,
        t: usize,
        b: usize,
        seed: u64,
        lengths: &wgpu::Buffer,
    ) {
        if cfg.variational() && self.masks_seed != Some(seed) {
            let words = MaskLayout::new(cfg, b).draw(cfg, b, seed);
            ctx.queue()
                .write_buffer(lengths, 4 * b as u64, bytemuck::cast_slice(&words));
            self.masks_seed = Some(seed);
        }
        let masked = cfg.dropout > 0.0 && cfg.num_layers > 1;
        if !masked || seed == self.seed {
            return;
        }
        self.layout = bptt_uniforms(ctx, cfg, &self.plans, &self.entries, t, b, seed);
        self.seed = seed;
        ctx.queue()
            .write_buffer(&self.uniforms, 0, &self.layout.bytes);
    }

    /// Dynamic offsets of forward step `s` and backward step `s` of `layer`.
    pub fn step_offset(&self, layer: usize, s: usize) -> u32 {
        self.layout.offset(self.entries.step(layer, s))
    }

    pub fn back_offset(&self, layer: usize, s: usize) -> u32 {
        self.layout.offset(self.entries.back(layer, s))
    }

    /// Dynamic offsets of wavefront forward and backward dispatch `s`.
    pub fn wave_forward_offset(&self, s: usize) -> u32 {
        self.layout.offset(self.entries.wave_forward(s))
    }

    pub fn wave_backward_offset(&self, s: usize) -> u32 {
        self.layout.offset(self.entries.wave_backward(s))
    }
}
