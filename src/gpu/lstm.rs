//! `GpuLstm`: the forward pass of `nn.LSTM` as WGSL kernels.
//!
//! Per layer, one GEMM projects the whole sequence through `W_ih` for both
//! directions at once, then one fused step dispatch per time step runs both
//! directions' recurrences. Everything is encoded into one command buffer and
//! submitted once; buffers, bind groups and per-step parameters for a given
//! (T, B) are made on the first call and reused.

use crate::config::LstmConfig;
use crate::cpu::LstmOutput;
use crate::error::{LstmError, Result};
use crate::gpu::kernels::{
    GemmKernel, GemmOp, GemmParams, PermuteKernel, PermuteParams, StepBuffers, StepKernel,
    StepParams,
};
use crate::gpu::layout::{recurrent_from_gpu, recurrent_to_gpu, rows_by_gate, rows_by_unit};
use crate::gpu::tensor::{TENSOR_USAGE, byte_size, map_and_read, read_back};
use crate::gpu::{GpuContext, GpuTensor};
use crate::input::{LstmInput, check_shapes};
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Where a forward pass starts from.
#[derive(Clone, Copy, Debug)]
pub enum InitialState<'a> {
    /// h_0 = c_0 = 0.
    Zeros,
    /// Given states, each [D·L, B, H].
    Given {
        h_0: &'a GpuTensor,
        c_0: &'a GpuTensor,
    },
    /// The final state of the previous forward with the same batch size
    /// (zeros if there was none): Keras' `stateful` streaming, where chunk
    /// k+1 continues chunk k without the state leaving the GPU.
    Carry,
}

/// The results of [`GpuLstm::forward`], in GPU memory. They are the engine's
/// own buffers for this shape: the next forward overwrites them, so read back
/// (`to_host`) or copy what must outlive it.
#[derive(Debug)]
pub struct GpuLstmOutput<'a> {
    /// [T, B, D·H], or [B, T, D·H] with `batch_first`.
    pub output: &'a GpuTensor,
    /// [D·L, B, H]
    pub h_n: &'a GpuTensor,
    /// [D·L, B, H]
    pub c_n: &'a GpuTensor,
}

/// One layer's parameters in the GPU layout (see [`crate::gpu::layout`]),
/// both directions side by side.
struct GpuLayer {
    /// [D·4H, in], rows by unit within each direction.
    w_ih: wgpu::Buffer,
    /// [D·4H], by unit (zeros without bias).
    b_ih: wgpu::Buffer,
    /// [D, in_h = H, H, 4]
    w_hh: wgpu::Buffer,
    /// [D·4H], by unit (zeros without bias).
    b_hh: wgpu::Buffer,
    input_size: usize,
}

/// Buffers and bind groups for one (T, B).
struct Workspace {
    seq_len: usize,
    batch: usize,
    /// [T, B, I]: the time-major input of layer 0.
    input: GpuTensor,
    /// [B, T, I] and [B, T, D·H]: batch-first input and output, when configured.
    batch_first: Option<(GpuTensor, GpuTensor)>,
    /// [T·B, D·4H]: X · W_ihᵀ + b_ih of the current layer.
    _gates: wgpu::Buffer,
    /// Per layer: [T, B, D·H] outputs.
    ys: Vec<GpuTensor>,
    /// [2, L·D, B, H]: h double-buffered by step parity.
    h_state: wgpu::Buffer,
    /// [L·D, B, H]
    c_state: wgpu::Buffer,
    /// [B] u32
    lengths: wgpu::Buffer,
    _uniforms: wgpu::Buffer,
    gemm: Vec<(wgpu::BindGroup, (u32, u32))>,
    steps: Vec<wgpu::BindGroup>,
    step_groups: (u32, u32, u32),
    /// Dynamic offset of (layer, step) s: `step_base + (layer·T + s)·stride`.
    step_base: u32,
    stride: u32,
    permutes: Option<[(wgpu::BindGroup, (u32, u32)); 2]>,
    /// Host read-back of output, h_n and c_n, laid end to end.
    staging: wgpu::Buffer,
}

/// The final states per batch size, where [`InitialState::Carry`] reads.
struct State {
    batch: usize,
    h_n: GpuTensor,
    c_n: GpuTensor,
}

/// How many shapes keep their workspace before the oldest is dropped.
const MAX_WORKSPACES: usize = 4;

/// An LSTM whose weights and state live on the GPU.
pub struct GpuLstm {
    ctx: GpuContext,
    config: LstmConfig,
    gemm: GemmKernel,
    step: StepKernel,
    permute: PermuteKernel,
    layers: Vec<GpuLayer>,
    workspaces: Vec<Workspace>,
    states: Vec<State>,
}

impl GpuLstm {
    /// Uploads `weights` (PyTorch layout) and builds the kernels.
    pub fn new(ctx: &GpuContext, weights: &LstmWeights<f32>) -> Result<Self> {
        let config = weights.config.clone();
        config.validate()?;
        let (h, dirs) = (config.hidden_size, config.num_directions());
        let upload = |label: &str, data: &[f32]| -> Result<wgpu::Buffer> {
            let buf = ctx.create_buffer(label, 4 * data.len() as u64, TENSOR_USAGE)?;
            ctx.queue()
                .write_buffer(&buf, 0, bytemuck::cast_slice(data));
            Ok(buf)
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for layer in 0..config.num_layers {
            let input_size = config.layer_input_size(layer);
            let (mut w_ih, mut b_ih, mut w_hh, mut b_hh) = (vec![], vec![], vec![], vec![]);
            for dir in 0..dirs {
                let lw = weights.layer(layer, dir);
                w_ih.extend(rows_by_unit(&lw.weight_ih, h, input_size));
                w_hh.extend(recurrent_to_gpu(&lw.weight_hh, h, h));
                let zeros = vec![0.0; 4 * h];
                b_ih.extend(rows_by_unit(lw.bias_ih.as_deref().unwrap_or(&zeros), h, 1));
                b_hh.extend(rows_by_unit(lw.bias_hh.as_deref().unwrap_or(&zeros), h, 1));
            }
            layers.push(GpuLayer {
                w_ih: upload(&format!("weight_ih_l{layer}"), &w_ih)?,
                b_ih: upload(&format!("bias_ih_l{layer}"), &b_ih)?,
                w_hh: upload(&format!("weight_hh_l{layer}"), &w_hh)?,
                b_hh: upload(&format!("bias_hh_l{layer}"), &b_hh)?,
                input_size,
            });
        }
        let engine = GpuLstm {
            gemm: GemmKernel::new(ctx),
            step: StepKernel::new(ctx),
            permute: PermuteKernel::new(ctx),
            ctx: ctx.clone(),
            config,
            layers,
            workspaces: Vec::new(),
            states: Vec::new(),
        };
        ctx.check()?;
        Ok(engine)
    }

    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Reads the weights back, converted to PyTorch's layout.
    pub fn weights(&self) -> Result<LstmWeights<f32>> {
        let cfg = &self.config;
        let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
        let mut out = LstmWeights::zeros(cfg)?;
        for (l, gl) in self.layers.iter().enumerate() {
            let tensors: Vec<GpuTensor> = [
                (&gl.w_ih, vec![dirs * 4 * h, gl.input_size]),
                (&gl.b_ih, vec![dirs * 4 * h]),
                (&gl.w_hh, vec![dirs * h * h * 4]),
                (&gl.b_hh, vec![dirs * 4 * h]),
            ]
            .into_iter()
            .map(|(b, shape)| GpuTensor::from_buffer(b.clone(), shape))
            .collect();
            let host = read_back(&self.ctx, &tensors.iter().collect::<Vec<_>>())?;
            for dir in 0..dirs {
                let part = |t: &Tensor<f32>, n: usize| t.data()[dir * n..(dir + 1) * n].to_vec();
                let bias = |t: &Tensor<f32>| rows_by_gate(&part(t, 4 * h), h, 1);
                *out.layer_mut(l, dir) = LayerWeights {
                    weight_ih: rows_by_gate(
                        &part(&host[0], 4 * h * gl.input_size),
                        h,
                        gl.input_size,
                    ),
                    weight_hh: recurrent_from_gpu(&part(&host[2], 4 * h * h), h, h),
                    bias_ih: cfg.bias.then(|| bias(&host[1])),
                    bias_hh: cfg.bias.then(|| bias(&host[3])),
                };
            }
        }
        Ok(out)
    }

    /// Runs the forward pass on a GPU tensor: `input` is [T, B, I] (or
    /// [B, T, I] with `batch_first`), `lengths` as in
    /// `pack_padded_sequence`. One submit; nothing is read back.
    pub fn forward(
        &mut self,
        input: &GpuTensor,
        state: InitialState<'_>,
        lengths: Option<&[usize]>,
    ) -> Result<GpuLstmOutput<'_>> {
        let (h0, c0) = match state {
            InitialState::Given { h_0, c_0 } => (Some(h_0.shape()), Some(c_0.shape())),
            _ => (None, None),
        };
        let (t, b) = check_shapes(&self.config, input.shape(), h0, c0, lengths)?;
        let idx = self.prepare(t, b)?;
        self.run(idx, Source::Gpu(input), state, lengths, false)?;
        Ok(self.outputs(idx))
    }

    /// Runs the forward pass on host tensors and reads the results back, in
    /// one submit: the GPU counterpart of [`crate::cpu::forward`].
    pub fn forward_host(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        let (t, b) = x.validate(&self.config)?;
        let idx = self.prepare(t, b)?;
        let state = match (x.h_0, x.c_0) {
            (None, None) => HostState::Zeros,
            (h, c) => HostState::Given(h, c),
        };
        self.run(
            idx,
            Source::Host(x.input, state),
            InitialState::Zeros,
            x.lengths,
            true,
        )?;
        let out = self.outputs(idx);
        let shapes = [out.output.shape(), out.h_n.shape(), out.c_n.shape()];
        let mut host = map_and_read(&self.ctx, &self.workspaces[idx].staging, &shapes)?;
        let c_n = host.pop().expect("three tensors");
        let h_n = host.pop().expect("three tensors");
        let output = host.pop().expect("three tensors");
        Ok(LstmOutput { output, h_n, c_n })
    }

    /// The workspace for (T, B), made on first use.
    fn prepare(&mut self, seq_len: usize, batch: usize) -> Result<usize> {
        if !self.states.iter().any(|s| s.batch == batch) {
            let shape = [
                self.config.num_layers * self.config.num_directions(),
                batch,
                self.config.hidden_size,
            ];
            self.states.push(State {
                batch,
                h_n: GpuTensor::empty(&self.ctx, "h_n", &shape)?,
                c_n: GpuTensor::empty(&self.ctx, "c_n", &shape)?,
            });
        }
        if let Some(i) = self
            .workspaces
            .iter()
            .position(|w| w.seq_len == seq_len && w.batch == batch)
        {
            return Ok(i);
        }
        if self.workspaces.len() == MAX_WORKSPACES {
            self.workspaces.remove(0);
        }
        let ws = self.build_workspace(seq_len, batch)?;
        self.workspaces.push(ws);
        Ok(self.workspaces.len() - 1)
    }

    fn outputs(&self, idx: usize) -> GpuLstmOutput<'_> {
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        GpuLstmOutput {
            output: match &ws.batch_first {
                Some((_, out)) => out,
                None => ws.ys.last().expect("at least one layer"),
            },
            h_n: &state.h_n,
            c_n: &state.c_n,
        }
    }

    fn state(&self, batch: usize) -> &State {
        self.states
            .iter()
            .find(|s| s.batch == batch)
            .expect("prepare() made the state")
    }

    fn build_workspace(&self, seq_len: usize, batch: usize) -> Result<Workspace> {
        let ctx = &self.ctx;
        let cfg = &self.config;
        let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
        let (t, b) = (seq_len, batch);
        let tensor = |label: &str, shape: &[usize]| GpuTensor::empty(ctx, label, shape);
        let buffer = |label: &str, shape: &[usize]| -> Result<wgpu::Buffer> {
            ctx.create_buffer(label, byte_size(label, shape)?, TENSOR_USAGE)
        };

        let input = tensor("input [T,B,I]", &[t, b, cfg.input_size])?;
        let batch_first = if cfg.batch_first {
            Some((
                tensor("input [B,T,I]", &[b, t, cfg.input_size])?,
                tensor("output [B,T,D·H]", &[b, t, dirs * h])?,
            ))
        } else {
            None
        };
        let gates = buffer("gates [T·B, D·4H]", &[t * b, dirs * 4 * h])?;
        let ys = (0..layers)
            .map(|l| tensor(&format!("output of layer {l} [T,B,D·H]"), &[t, b, dirs * h]))
            .collect::<Result<Vec<_>>>()?;
        let h_state = buffer("h state [2,L·D,B,H]", &[2, layers * dirs, b, h])?;
        let c_state = buffer("c state [L·D,B,H]", &[layers * dirs, b, h])?;
        let lengths = ctx.create_buffer("lengths [B]", 4 * b as u64, TENSOR_USAGE)?;

        // Uniforms, written once: per-layer GEMM parameters, two permutes,
        // then one StepParams per (layer, step) read through a dynamic offset.
        let align = ctx.limits().min_uniform_buffer_offset_alignment.max(16);
        let stride = (std::mem::size_of::<GemmParams>() as u32).next_multiple_of(align);
        let step_base = stride * (layers as u32 + 2);
        let entries = layers + 2 + layers * t;
        let mut bytes = vec![0u8; entries * stride as usize];
        let mut put = |entry: usize, data: &[u8]| {
            let at = entry * stride as usize;
            bytes[at..at + data.len()].copy_from_slice(data);
        };
        let mut gemm_params = Vec::new();
        for (l, gl) in self.layers.iter().enumerate() {
            let p = GemmParams {
                m: (t * b) as u32,
                n: (dirs * 4 * h) as u32,
                k: gl.input_size as u32,
                lda: gl.input_size as u32,
                ldb: gl.input_size as u32,
                ldc: (dirs * 4 * h) as u32,
                flags: GemmParams::TRANS_B | if cfg.bias { GemmParams::BIAS } else { 0 },
                ..Default::default()
            };
            put(l, bytemuck::bytes_of(&p));
            gemm_params.push(p);
        }
        let permute_in = PermuteParams {
            rows: b as u32,
            cols: t as u32,
            inner: cfg.input_size as u32,
            _pad: 0,
        };
        let permute_out = PermuteParams {
            rows: t as u32,
            cols: b as u32,
            inner: (dirs * h) as u32,
            _pad: 0,
        };
        put(layers, bytemuck::bytes_of(&permute_in));
        put(layers + 1, bytemuck::bytes_of(&permute_out));
        for l in 0..layers {
            for s in 0..t {
                let p = StepParams {
                    step: s as u32,
                    parity: (s % 2) as u32,
                    seq_len: t as u32,
                    batch: b as u32,
                    hidden: h as u32,
                    dirs: dirs as u32,
                    slot: (l * dirs) as u32,
                    slots: (layers * dirs) as u32,
                    dropout: Default::default(),
                };
                put(layers + 2 + l * t + s, bytemuck::bytes_of(&p));
            }
        }
        let uniforms = ctx.create_buffer(
            "uniforms",
            bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue().write_buffer(&uniforms, 0, &bytes);

        let mut gemm = Vec::new();
        let mut steps = Vec::new();
        for (l, gl) in self.layers.iter().enumerate() {
            let x = if l == 0 {
                &input.buffer
            } else {
                &ys[l - 1].buffer
            };
            let op = GemmOp {
                params: gemm_params[l],
                a: x,
                b: &gl.w_ih,
                bias: &gl.b_ih,
                c: &gates,
            };
            let groups = GemmKernel::workgroups(ctx, &op.params)?;
            gemm.push((
                self.gemm
                    .bind(ctx, &op, &uniforms, l as u64 * stride as u64),
                groups,
            ));
            steps.push(self.step.bind(
                ctx,
                &StepBuffers {
                    params: &uniforms,
                    gates_x: &gates,
                    w_hh: &gl.w_hh,
                    b_hh: &gl.b_hh,
                    h_state: &h_state,
                    c_state: &c_state,
                    y: &ys[l].buffer,
                    lengths: &lengths,
                },
                None,
            ));
        }
        let step_groups = StepKernel::workgroups(h, b, dirs);
        let limit = ctx.limits().max_compute_workgroups_per_dimension;
        if step_groups.0.max(step_groups.1) > limit {
            return Err(LstmError::DeviceLimit {
                what: format!("a step over H = {h} units and B = {b} sequences"),
                limit: "max_compute_workgroups_per_dimension",
                requested: step_groups.0.max(step_groups.1) as u64,
                available: limit as u64,
            });
        }
        let permutes = match &batch_first {
            Some((in_bf, out_bf)) => Some([
                (
                    self.permute.bind(
                        ctx,
                        (&uniforms, layers as u64 * stride as u64),
                        &in_bf.buffer,
                        &input.buffer,
                    ),
                    PermuteKernel::workgroups(ctx, t * b * cfg.input_size),
                ),
                (
                    self.permute.bind(
                        ctx,
                        (&uniforms, (layers as u64 + 1) * stride as u64),
                        &ys[layers - 1].buffer,
                        &out_bf.buffer,
                    ),
                    PermuteKernel::workgroups(ctx, t * b * dirs * h),
                ),
            ]),
            None => None,
        };
        let state_bytes = byte_size("h_n", &[layers * dirs, b, h])?;
        let staging = ctx.create_buffer(
            "forward read-back",
            byte_size("output", &[t, b, dirs * h])? + 2 * state_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.check()?;
        Ok(Workspace {
            seq_len,
            batch,
            input,
            batch_first,
            _gates: gates,
            ys,
            h_state,
            c_state,
            lengths,
            _uniforms: uniforms,
            gemm,
            steps,
            step_groups,
            step_base,
            stride,
            permutes,
            staging,
        })
    }

    /// Encodes and submits one forward pass into workspace `idx`.
    fn run(
        &self,
        idx: usize,
        source: Source<'_>,
        initial: InitialState<'_>,
        lengths: Option<&[usize]>,
        read_back: bool,
    ) -> Result<()> {
        let ctx = &self.ctx;
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        let (t, b) = (ws.seq_len, ws.batch);
        let slab = state.h_n.byte_len();
        let queue = ctx.queue();
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lstm forward"),
            });

        // The input, into the time-major (or batch-first staging) buffer.
        let input_dst = match &ws.batch_first {
            Some((in_bf, _)) => in_bf,
            None => &ws.input,
        };
        match source {
            Source::Gpu(x) => {
                enc.copy_buffer_to_buffer(&x.buffer, 0, &input_dst.buffer, 0, x.byte_len())
            }
            Source::Host(x, _) => {
                queue.write_buffer(&input_dst.buffer, 0, bytemuck::cast_slice(x.data()))
            }
        }
        // The initial state: h into parity 0 of the double buffer, c in place.
        match (source, initial) {
            (Source::Host(_, HostState::Given(h0, c0)), _) => {
                for (dst, given) in [(&ws.h_state, h0), (&ws.c_state, c0)] {
                    match given {
                        Some(v) => queue.write_buffer(dst, 0, bytemuck::cast_slice(v.data())),
                        None => enc.clear_buffer(dst, 0, Some(slab)),
                    }
                }
            }
            (_, InitialState::Given { h_0, c_0 }) => {
                enc.copy_buffer_to_buffer(&h_0.buffer, 0, &ws.h_state, 0, slab);
                enc.copy_buffer_to_buffer(&c_0.buffer, 0, &ws.c_state, 0, slab);
            }
            (_, InitialState::Carry) => {
                enc.copy_buffer_to_buffer(&state.h_n.buffer, 0, &ws.h_state, 0, slab);
                enc.copy_buffer_to_buffer(&state.c_n.buffer, 0, &ws.c_state, 0, slab);
            }
            _ => {
                enc.clear_buffer(&ws.h_state, 0, Some(slab));
                enc.clear_buffer(&ws.c_state, 0, Some(slab));
            }
        }
        let lens: Vec<u32> = match lengths {
            Some(l) => l.iter().map(|&v| v as u32).collect(),
            None => vec![t as u32; b],
        };
        queue.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lens));

        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("lstm forward"),
                timestamp_writes: None,
            });
            if let Some([(bg, groups), _]) = &ws.permutes {
                self.permute.encode(ctx, &mut pass, bg, *groups);
            }
            for (l, (gemm_bg, groups)) in ws.gemm.iter().enumerate() {
                self.gemm.encode(ctx, &mut pass, gemm_bg, *groups);
                for s in 0..t {
                    let offset = ws.step_base + (l * t + s) as u32 * ws.stride;
                    self.step
                        .encode(ctx, &mut pass, false, &ws.steps[l], offset, ws.step_groups);
                }
            }
            if let Some([_, (bg, groups)]) = &ws.permutes {
                self.permute.encode(ctx, &mut pass, bg, *groups);
            }
        }
        // h_T sits in the parity T % 2 half of the double buffer.
        enc.copy_buffer_to_buffer(
            &ws.h_state,
            (t % 2) as u64 * slab,
            &state.h_n.buffer,
            0,
            slab,
        );
        enc.copy_buffer_to_buffer(&ws.c_state, 0, &state.c_n.buffer, 0, slab);
        if read_back {
            let out = match &ws.batch_first {
                Some((_, out)) => out,
                None => ws.ys.last().expect("at least one layer"),
            };
            let mut at = 0;
            for src in [out, &state.h_n, &state.c_n] {
                enc.copy_buffer_to_buffer(&src.buffer, 0, &ws.staging, at, src.byte_len());
                at += src.byte_len();
            }
        }
        ctx.submit_and_wait(enc)
    }
}

/// Where the input comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Gpu(&'a GpuTensor),
    Host(&'a Tensor<f32>, HostState<'a>),
}

#[derive(Clone, Copy)]
enum HostState<'a> {
    Zeros,
    Given(Option<&'a Tensor<f32>>, Option<&'a Tensor<f32>>),
}
