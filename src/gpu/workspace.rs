//! The buffers and bind groups of one (T, B) shape, built on first use and
//! reused by every later pass of that shape.

use crate::config::LstmConfig;
use crate::error::{LstmError, Result};
use crate::gpu::kernels::{
    GemmKernel, GemmOp, GemmParams, HiddenProjBuffers, HiddenProjPipeline, LayerNormKernels,
    LnInputBuffers, LnStepBuffers, LstmGemms, PermuteKernel, PermuteParams, StepBuffers,
    StepParams, StepPipelines, WavePipelines, WavefrontBuffers, check_groups,
    hidden_proj_workgroups, wavefront_block,
};
use crate::gpu::lstm::bptt::BpttSpace;
use crate::gpu::tensor::{TENSOR_USAGE, byte_size, byte_size_in};
use crate::gpu::{GpuContext, GpuTensor, Precision};

/// One layer's parameters (or gradients) in the GPU layout (see
/// [`crate::gpu::layout`]), both directions side by side, stored in
/// `precision`.
pub(super) struct GpuLayer {
    /// [D·4H, in], rows by unit within each direction.
    pub w_ih: wgpu::Buffer,
    /// [2, D·4H]: b_ih then b_hh, by unit (zeros without bias). One buffer,
    /// so that the input-projection GEMM adds both and one backward GEMM
    /// writes both gradients (which are equal).
    pub bias: wgpu::Buffer,
    /// [D·4H, H_out], rows by unit within each direction: H_out = P with a
    /// hidden projection, else H.
    pub w_hh: wgpu::Buffer,
    /// [D, P, H] in PyTorch's layout: the hidden projection, when `proj_size` > 0.
    pub w_hr: Option<wgpu::Buffer>,
    /// [D, 18H] f32, a layer-normalised LSTM's gains and biases per
    /// direction: γ_ih, β_ih, γ_hh, β_hh (4H each, by unit), γ_c, β_c (H
    /// each); see `shaders/ln_common.wgsl`.
    pub ln: Option<wgpu::Buffer>,
    pub input_size: usize,
    pub precision: Precision,
}

impl GpuLayer {
    /// The buffers in the order parameter lists use: W_ih, W_hh, then the
    /// biases (b_ih and b_hh in one buffer) with `bias`, then W_hr with a
    /// hidden projection, then the layer norm's gains and biases.
    pub fn params(&self, bias: bool) -> Vec<&wgpu::Buffer> {
        let mut out = vec![&self.w_ih, &self.w_hh];
        if bias {
            out.push(&self.bias);
        }
        out.extend(&self.w_hr);
        out.extend(&self.ln);
        out
    }

    /// Bytes allocated for the tensors.
    pub fn allocated_bytes(&self) -> u64 {
        [&self.w_ih, &self.bias, &self.w_hh]
            .into_iter()
            .chain(&self.w_hr)
            .chain(&self.ln)
            .map(|b| b.size())
            .sum()
    }
}

/// Uniform parameters laid out at the device's dynamic-offset alignment.
pub(super) struct Uniforms {
    pub stride: u32,
    pub bytes: Vec<u8>,
}

impl Uniforms {
    pub fn new(ctx: &GpuContext, entries: usize) -> Self {
        let align = ctx.limits().min_uniform_buffer_offset_alignment.max(16);
        // 128 bytes holds the largest entry (the step parameters, 80).
        let stride = 128u32.next_multiple_of(align);
        Uniforms {
            stride,
            bytes: vec![0; entries.max(1) * stride as usize],
        }
    }

    pub fn put<T: bytemuck::Pod>(&mut self, entry: usize, value: &T) {
        let data = bytemuck::bytes_of(value);
        assert!(
            data.len() <= self.stride as usize,
            "uniform entry larger than its slot"
        );
        let at = entry * self.stride as usize;
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    /// The value [`put`](Self::put) wrote at `entry`.
    pub fn get<T: bytemuck::Pod>(&self, entry: usize) -> T {
        let at = entry * self.stride as usize;
        bytemuck::pod_read_unaligned(&self.bytes[at..at + std::mem::size_of::<T>()])
    }

    pub fn offset(&self, entry: usize) -> u32 {
        entry as u32 * self.stride
    }
}

/// Buffers and bind groups for one (T, B).
pub(super) struct Workspace {
    pub seq_len: usize,
    pub batch: usize,
    /// [T, B, I]: the time-major input of layer 0.
    pub input: GpuTensor,
    /// [B, T, I] and [B, T, D·H_out]: batch-first input and output, when configured.
    pub batch_first: Option<(GpuTensor, GpuTensor)>,
    /// [T·B, D·4H]: X · W_ihᵀ + b_ih + b_hh of the current layer, in the engine's
    /// storage precision.
    pub gates: wgpu::Buffer,
    /// Per layer: [T, B, D·H_out] outputs (inner layers after dropout when
    /// training). H_out = P with a hidden projection, else H.
    pub ys: Vec<GpuTensor>,
    /// The recurrent state in one buffer (one binding): h [2, L·D, B, H_out],
    /// double-buffered by step parity, then c [L·D, B, H] from `c_offset`.
    pub state: wgpu::Buffer,
    /// Where c starts in `state`, in bytes.
    pub c_offset: u64,
    /// Made for a forward that returns the per-step cell states: the byte
    /// offset in `state` of the last layer's [T, B, D, H], which the step
    /// kernels write and `staging` reads back after the output and states.
    pub cells: Option<u64>,
    /// [B] u32
    pub lengths: wgpu::Buffer,
    pub _uniforms: wgpu::Buffer,
    pub layout: Uniforms,
    /// Per layer: the input projection's pipeline, bind group and workgroups.
    pub gemm: Vec<(GemmKernel, wgpu::BindGroup, (u32, u32, u32))>,
    pub steps: Vec<wgpu::BindGroup>,
    /// The wavefront forward of a unidirectional stack (inference).
    pub wave: Option<WaveSpace>,
    /// The step pipelines of this shape's tile, and its workgroup counts.
    pub step: StepPipelines,
    pub step_groups: (u32, u32, u32),
    /// With a hidden projection: [T, B, D·H], m_t = o ⊙ tanh(c_t) of the current
    /// layer (inference), and per layer the hidden-projection step's bind group.
    pub _m: Option<wgpu::Buffer>,
    pub hidden_projs: Vec<wgpu::BindGroup>,
    /// With a hidden projection: its forward pipeline, and the workgroups of
    /// one forward and one backward projection step.
    pub hidden_proj: Option<HiddenProjPipeline>,
    pub hidden_proj_groups: (u32, u32, u32),
    pub hidden_proj_back_groups: (u32, u32, u32),
    pub permutes: Option<[(wgpu::BindGroup, (u32, u32)); 2]>,
    /// Host read-back of output, h_n and c_n, laid end to end.
    pub staging: wgpu::Buffer,
    /// A layer-normalised LSTM's inference dispatches.
    pub ln: Option<LnSpace>,
    /// Saved activations and backward buffers, made on the first training pass.
    pub bptt: Option<BpttSpace>,
}

/// A layer-normalised LSTM's inference dispatches, per layer: the input
/// norm after the input projection, and each step's second dispatch (the
/// norms and the cell, `shaders/ln_step.wgsl`), with the workgroups of each.
pub(super) struct LnSpace {
    pub input: Vec<wgpu::BindGroup>,
    pub steps: Vec<wgpu::BindGroup>,
    /// One workgroup per row of [T, B, D].
    pub rows: (u32, u32, u32),
    /// One workgroup per (b, direction).
    pub cells: (u32, u32, u32),
    /// The buffers bound where the training kernels' saved rows go.
    _unused: Vec<wgpu::Buffer>,
}

impl LnSpace {
    #[allow(clippy::too_many_arguments)]
    fn build(
        ctx: &GpuContext,
        cfg: &LstmConfig,
        layers_w: &[GpuLayer],
        k: &LayerNormKernels,
        uniforms: &wgpu::Buffer,
        (gates, state, lengths): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        ys: &[GpuTensor],
        t: usize,
        b: usize,
    ) -> Result<Self> {
        let unused = (0..4)
            .map(|_| ctx.create_buffer("unused", 16, TENSOR_USAGE))
            .collect::<Result<Vec<_>>>()?;
        let mut input = Vec::new();
        let mut steps = Vec::new();
        for (l, gl) in layers_w.iter().enumerate() {
            let ln = gl.ln.as_ref().expect("layer-norm parameters");
            input.push(k.input.bind(
                ctx,
                &LnInputBuffers {
                    params: uniforms,
                    gates,
                    ln,
                    bias: &gl.bias,
                    saved: &unused[0],
                },
            ));
            steps.push(k.step.bind(
                ctx,
                &LnStepBuffers {
                    params: uniforms,
                    gates_x: gates,
                    ln,
                    state,
                    y: &ys[l].buffer,
                    lengths,
                    saved: &unused[1],
                    gates: &unused[2],
                    c: &unused[3],
                },
            ));
        }
        let cells = (b as u32, cfg.num_directions() as u32, 1);
        check_groups(
            ctx,
            &format!("a layer-norm step over B = {b} sequences"),
            &[cells.0],
        )?;
        Ok(LnSpace {
            input,
            steps,
            rows: LayerNormKernels::row_groups(ctx, t * b * cfg.num_directions())?,
            cells,
            _unused: unused,
        })
    }
}

/// Entry indices in a workspace's uniform buffer.
pub(in crate::gpu) fn gemm_entry(layer: usize) -> usize {
    layer
}
pub(super) fn permute_entry(layers: usize, which: usize) -> usize {
    layers + which
}
pub(super) fn step_entry(layers: usize, seq_len: usize, layer: usize, step: usize) -> usize {
    layers + 2 + layer * seq_len + step
}
/// The uniform of wavefront step `step`, after every layer's steps.
pub(super) fn wave_entry(layers: usize, seq_len: usize, step: usize) -> usize {
    layers + 2 + layers * seq_len + step
}

/// The kernels a workspace binds.
pub(super) struct Kernels<'a> {
    pub gemms: &'a LstmGemms,
    /// The step pipelines of the tile chosen for this shape.
    pub step: StepPipelines,
    pub permute: &'a PermuteKernel,
    /// With a hidden projection.
    pub hidden_proj: Option<HiddenProjPipeline>,
    /// A layer-normalised LSTM's kernels.
    pub layer_norm: Option<&'a LayerNormKernels>,
    /// For a unidirectional stack without projection: the wavefront
    /// pipelines of this shape's tile, and the packed weights they read.
    pub wave: Option<(WavePipelines, &'a wgpu::Buffer)>,
}

/// A workspace's wavefront forward: T + L - 1 dispatches.
pub(super) struct WaveSpace {
    pub pipelines: WavePipelines,
    /// The inference forward's bind group.
    pub bind_group: wgpu::BindGroup,
    pub groups: (u32, u32, u32),
    /// [L, T, B, H]: every layer's output; the last layer's is copied into
    /// the workspace's output after the steps.
    pub outputs: wgpu::Buffer,
}

impl Workspace {
    pub fn build(
        ctx: &GpuContext,
        cfg: &LstmConfig,
        layers_w: &[GpuLayer],
        k: Kernels<'_>,
        seq_len: usize,
        batch: usize,
        cells: bool,
    ) -> Result<Self> {
        let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
        let hout = cfg.hidden_out();
        let (t, b) = (seq_len, batch);
        let tensor = |label: &str, shape: &[usize]| GpuTensor::empty(ctx, label, shape);
        let buffer = |label: &str, shape: &[usize]| -> Result<wgpu::Buffer> {
            ctx.create_buffer(label, byte_size(label, shape)?, TENSOR_USAGE)
        };

        let input = tensor("input [T,B,I]", &[t, b, cfg.input_size])?;
        let batch_first = if cfg.batch_first {
            Some((
                tensor("input [B,T,I]", &[b, t, cfg.input_size])?,
                tensor("output [B,T,D·H_out]", &[b, t, dirs * hout])?,
            ))
        } else {
            None
        };
        let precision = layers_w[0].precision;
        let gates = ctx.create_buffer(
            "gates [T·B, D·4H]",
            byte_size_in("gates", &[t * b, dirs * 4 * h], precision)?,
            TENSOR_USAGE,
        )?;
        let ys = (0..layers)
            .map(|l| {
                tensor(
                    &format!("output of layer {l} [T,B,D·H_out]"),
                    &[t, b, dirs * hout],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // h double-buffered by step parity [2, L·D, B, H_out], then c [L·D, B, H],
        // then a layer-normalised LSTM's raw recurrent products [D, B, H, 4],
        // then (asked for) the last layer's cell states [T, B, D, H].
        let ln_len = if cfg.layer_norm { dirs * b * 4 * h } else { 0 };
        let cells_at = 2 * layers * dirs * b * hout + layers * dirs * b * h + ln_len;
        let cells_len = if cells { t * b * dirs * h } else { 0 };
        let state = buffer(
            "state: h [2,L·D,B,H_out], c [L·D,B,H], R [D,B,H,4], cell states [T,B,D,H]",
            &[cells_at + cells_len],
        )?;
        let c_offset = 4 * (2 * layers * dirs * b * hout) as u64;
        // (The buffer fits one binding, so its f32 indices fit a u32.)
        let cells_word = if cells { cells_at as u32 } else { 0 };
        let m = match k.hidden_proj {
            Some(_) => Some(buffer("m [T,B,D·H]", &[t, b, dirs * h])?),
            None => None,
        };
        // The lengths [B], then a training pass's variational dropout masks.
        let words = crate::gpu::lstm::masks::MaskLayout::new(cfg, b).words;
        let lengths = ctx.create_buffer("lengths [B] and masks", 4 * words as u64, TENSOR_USAGE)?;

        // Uniforms, written once: per-layer GEMM parameters, two permutes,
        // then one StepParams per (layer, step) read through a dynamic offset.
        // The wavefront's outputs; a shape whose [L, T, B, H] does not fit
        // one binding runs layer by layer.
        let outputs = match &k.wave {
            Some(_) => match buffer("wavefront outputs [L,T,B,H]", &[layers, t, b, h]) {
                Ok(outputs) => Some(outputs),
                Err(LstmError::DeviceLimit { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let wave_steps = if outputs.is_some() { t + layers - 1 } else { 0 };
        let mut layout = Uniforms::new(ctx, layers + 2 + layers * t + wave_steps);
        for (l, gl) in layers_w.iter().enumerate() {
            layout.put(gemm_entry(l), &forward_gemm(cfg, gl, t * b));
        }
        let permute = |rows: usize, cols: usize, inner: usize| PermuteParams {
            rows: rows as u32,
            cols: cols as u32,
            inner: inner as u32,
            _pad: 0,
        };
        layout.put(permute_entry(layers, 0), &permute(b, t, cfg.input_size));
        layout.put(permute_entry(layers, 1), &permute(t, b, dirs * hout));
        for l in 0..layers {
            for s in 0..t {
                let mut p = step_params(cfg, l, s, t, b);
                if l + 1 == layers {
                    p.cells = cells_word;
                }
                layout.put(step_entry(layers, t, l, s), &p);
            }
        }
        for s in 0..wave_steps {
            let p = StepParams {
                step: s as u32,
                slot: wavefront_block(h) as u32,
                cells: cells_word,
                ..step_params(cfg, 0, 0, t, b)
            };
            layout.put(wave_entry(layers, t, s), &p);
        }
        let uniforms = ctx.create_buffer(
            "uniforms",
            layout.bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue().write_buffer(&uniforms, 0, &layout.bytes);

        let mut gemm = Vec::new();
        let mut steps = Vec::new();
        let mut hidden_projs = Vec::new();
        for (l, gl) in layers_w.iter().enumerate() {
            let x = if l == 0 {
                &input.buffer
            } else {
                &ys[l - 1].buffer
            };
            let op = GemmOp {
                params: forward_gemm(cfg, gl, t * b),
                a: x,
                b: &gl.w_ih,
                bias: &gl.bias,
                c: &gates,
            };
            let kernel = k.gemms.forward.kernel(ctx, &op.params)?;
            let groups = kernel.workgroups(ctx, &op.params)?;
            let offset = layout.offset(gemm_entry(l)) as u64;
            let bind_group = kernel.bind(ctx, &op, &uniforms, offset);
            gemm.push((kernel, bind_group, groups));
            steps.push(k.step.bind(
                ctx,
                &StepBuffers {
                    params: &uniforms,
                    gates_x: &gates,
                    w_hh: &gl.w_hh,
                    state: &state,
                    y: m.as_ref().unwrap_or(&ys[l].buffer),
                    lengths: &lengths,
                },
                None,
            ));
            if let (Some(kernel), Some(m), Some(w_hr)) = (&k.hidden_proj, &m, &gl.w_hr) {
                hidden_projs.push(kernel.bind(
                    ctx,
                    &HiddenProjBuffers {
                        params: &uniforms,
                        m,
                        w_hr,
                        h_state: &state,
                        y: &ys[l].buffer,
                        lengths: &lengths,
                    },
                ));
            }
        }
        let wave = match (&k.wave, outputs) {
            (Some((pipelines, weights)), Some(outputs)) => {
                let bind_group = pipelines.infer.bind(
                    ctx,
                    &WavefrontBuffers {
                        params: &uniforms,
                        gates_x: &gates,
                        weights,
                        state: &state,
                        outputs: &outputs,
                        lengths: &lengths,
                    },
                );
                let (x, y, _) = k.step.tile().workgroups(h, b, 1);
                Some(WaveSpace {
                    pipelines: pipelines.clone(),
                    bind_group,
                    groups: (x, y, layers as u32),
                    outputs,
                })
            }
            _ => None,
        };
        let step_groups = k.step.tile().workgroups(h, b, dirs);
        check_groups(
            ctx,
            &format!("a step over H = {h} units and B = {b} sequences"),
            &[step_groups.0, step_groups.1],
        )?;
        let hidden_proj_groups = k
            .hidden_proj
            .as_ref()
            .map_or((0, 0, 0), |k| k.tile().workgroups(cfg.proj_size, b, dirs));
        let hidden_proj_back_groups = hidden_proj_workgroups(cfg.proj_size, b, dirs);
        let permutes = match &batch_first {
            Some((in_bf, out_bf)) => {
                let at = |w| (&uniforms, layout.offset(permute_entry(layers, w)) as u64);
                Some([
                    (
                        k.permute.bind(ctx, at(0), &in_bf.buffer, &input.buffer),
                        PermuteKernel::workgroups(ctx, t * b * cfg.input_size),
                    ),
                    (
                        k.permute
                            .bind(ctx, at(1), &ys[layers - 1].buffer, &out_bf.buffer),
                        PermuteKernel::workgroups(ctx, t * b * dirs * hout),
                    ),
                ])
            }
            None => None,
        };
        let ln = match k.layer_norm {
            Some(kernels) => Some(LnSpace::build(
                ctx,
                cfg,
                layers_w,
                kernels,
                &uniforms,
                (&gates, &state, &lengths),
                &ys,
                t,
                b,
            )?),
            None => None,
        };
        let staging = ctx.create_buffer(
            "forward read-back",
            byte_size("output", &[t, b, dirs * hout])?
                + byte_size("h_n", &[layers * dirs, b, hout])?
                + byte_size("c_n", &[layers * dirs, b, h])?
                + 4 * cells_len as u64,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.check()?;
        Ok(Workspace {
            seq_len,
            batch,
            input,
            batch_first,
            gates,
            ys,
            state,
            c_offset,
            cells: cells.then_some(4 * cells_at as u64),
            lengths,
            _uniforms: uniforms,
            layout,
            gemm,
            steps,
            wave,
            step: k.step.clone(),
            step_groups,
            _m: m,
            hidden_projs,
            hidden_proj: k.hidden_proj.clone(),
            hidden_proj_groups,
            hidden_proj_back_groups,
            permutes,
            staging,
            ln,
            bptt: None,
        })
    }

    /// The final output tensor: the last layer's, or its batch-first copy.
    pub fn output(&self) -> &GpuTensor {
        match &self.batch_first {
            Some((_, out)) => out,
            None => self.ys.last().expect("at least one layer"),
        }
    }
}

/// G = X · W_ihᵀ + b_ih + b_hh for one layer: [T·B, D·4H]. Both biases
/// enter here, so the step kernel binds neither.
pub(in crate::gpu) fn forward_gemm(cfg: &LstmConfig, gl: &GpuLayer, rows: usize) -> GemmParams {
    let n = (cfg.num_directions() * 4 * cfg.hidden_size) as u32;
    GemmParams {
        m: rows as u32,
        n,
        k: gl.input_size as u32,
        lda: gl.input_size as u32,
        ldb: gl.input_size as u32,
        ldc: n,
        // A layer-normalised LSTM adds its biases after the input norm.
        flags: GemmParams::TRANS_B
            | if cfg.bias && !cfg.layer_norm {
                GemmParams::BIAS | GemmParams::BIAS_PAIR
            } else {
                0
            },
        ..Default::default()
    }
}

/// The parameters of forward step `s` of `layer` (dropout off; training
/// passes fill it in).
pub(super) fn step_params(
    cfg: &LstmConfig,
    layer: usize,
    s: usize,
    t: usize,
    b: usize,
) -> StepParams {
    let (dirs, layers) = (cfg.num_directions(), cfg.num_layers);
    StepParams {
        step: s as u32,
        parity: (s % 2) as u32,
        seq_len: t as u32,
        batch: b as u32,
        hidden: cfg.hidden_size as u32,
        dirs: dirs as u32,
        slot: (layer * dirs) as u32,
        slots: (layers * dirs) as u32,
        dropout: Default::default(),
        h_out: cfg.hidden_out() as u32,
        act: match cfg.activation {
            crate::config::Activation::Tanh => 0,
            crate::config::Activation::Relu => 1,
        },
        rmask: 0,
        cells: 0,
        cell: u32::from(cfg.cell == crate::config::Cell::Gru),
        ln: ln_products_at(cfg, b).unwrap_or(0) as u32,
        _pad: [0; 2],
    }
}

/// A layer-normalised LSTM's raw recurrent products R [D, B, H, 4] of the
/// step in progress: their f32 index in the state buffer, after h and c.
pub(super) fn ln_products_at(cfg: &LstmConfig, b: usize) -> Option<usize> {
    let (layers, dirs) = (cfg.num_layers, cfg.num_directions());
    cfg.layer_norm
        .then(|| 2 * layers * dirs * b * cfg.hidden_out() + layers * dirs * b * cfg.hidden_size)
}
