//! Command encoding of [`GpuLstm`]'s forward pass: the input and initial
//! state copies, the input projection and step dispatches of every layer,
//! and the final state copies; and the submit of a pass with its timestamps.

use super::GpuLstm;
use crate::error::Result;
use crate::gpu::kernels::wavefront_block;
use crate::gpu::profiler::Phase;
use crate::gpu::workspace::{step_entry, wave_entry};
use crate::gpu::{GpuTensor, InitialState};
use crate::input::{LstmInput, check_shapes};

/// Where the input comes from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    Gpu(&'a GpuTensor, InitialState<'a>),
    Host(&'a LstmInput<'a, f32>),
}

impl GpuLstm {
    pub(super) fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// A compute pass, timed towards `phase` when profiling.
    pub(super) fn begin_pass<'e>(
        &self,
        enc: &'e mut wgpu::CommandEncoder,
        label: &str,
        phase: Option<Phase>,
    ) -> wgpu::ComputePass<'e> {
        let timestamp_writes =
            phase.and_then(|ph| self.profiler.as_ref().and_then(|p| p.writes(ph)));
        enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes,
        })
        .forget_lifetime()
    }

    /// Submits `enc` and returns without waiting for the GPU; when
    /// profiling, with its timestamps, which are then read back (a wait).
    pub(super) fn submit(&mut self, mut enc: wgpu::CommandEncoder) -> Result<()> {
        self.encode_resolve(&mut enc);
        self.ctx.submit(enc)?;
        self.collect_times()
    }

    /// Encodes the copy of this submit's timestamps (profiling only).
    pub(in crate::gpu) fn encode_resolve(&self, enc: &mut wgpu::CommandEncoder) {
        if let Some(p) = &self.profiler {
            p.resolve(enc);
        }
    }

    /// After a submit: reads its timestamps (profiling only).
    pub(in crate::gpu) fn collect_times(&mut self) -> Result<()> {
        if let Some(p) = &self.profiler {
            self.kernel_times = Some(p.read(&self.ctx)?);
        }
        Ok(())
    }

    /// Validates, prepares the workspace and runs one forward pass (one
    /// submit); returns the workspace index.
    pub(super) fn pass(
        &mut self,
        source: Source<'_>,
        lengths: Option<&[usize]>,
        dropout_seed: Option<u64>,
        read_back: bool,
    ) -> Result<usize> {
        let (t, b) = match source {
            Source::Host(x) => x.validate(&self.config)?,
            Source::Gpu(input, state) => {
                let (h0, c0) = match state {
                    InitialState::Given { h_0, c_0 } => (Some(h_0.shape()), Some(c_0.shape())),
                    _ => (None, None),
                };
                check_shapes(&self.config, input.shape(), h0, c0, lengths)?
            }
        };
        // The per-step cell states (inference, host API) need a workspace
        // that writes them.
        let cells = matches!(source, Source::Host(x) if x.cell_states && dropout_seed.is_none());
        let idx = self.prepare(t, b, dropout_seed.is_some(), cells)?;
        if let Some(seed) = dropout_seed {
            let ws = &mut self.workspaces[idx];
            let tr = ws.bptt.as_mut().expect("prepared for training");
            tr.set_seed(&self.ctx, &self.config, t, b, seed, &ws.lengths);
            self.last_train = Some((t, b));
        }
        let mut enc = self.encoder("lstm forward");
        self.encode_forward(&mut enc, idx, source, lengths, dropout_seed.is_some());
        if read_back {
            let ws = &self.workspaces[idx];
            let state = self.state(b);
            let mut at = 0;
            for src in [ws.output(), &state.h_n, &state.c_n] {
                enc.copy_buffer_to_buffer(&src.buffer, 0, &ws.staging, at, src.byte_len());
                at += src.byte_len();
            }
            if let Some(cells) = ws.cells {
                let len = ws.staging.size() - at;
                enc.copy_buffer_to_buffer(&ws.state, cells, &ws.staging, at, len);
            }
        }
        self.submit(enc)?;
        Ok(idx)
    }

    /// Encodes one forward pass into `enc`.
    fn encode_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        source: Source<'_>,
        lengths: Option<&[usize]>,
        training: bool,
    ) {
        let ctx = &self.ctx;
        let cfg = &self.config;
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        let (t, b, layers) = (ws.seq_len, ws.batch, cfg.num_layers);
        let (h_slab, c_slab) = (state.h_n.byte_len(), state.c_n.byte_len());
        let queue = ctx.queue();

        // The input, into the time-major (or batch-first staging) buffer.
        let input_dst = ws.batch_first.as_ref().map_or(&ws.input, |(i, _)| i);
        match source {
            Source::Gpu(x, _) => {
                enc.copy_buffer_to_buffer(&x.buffer, 0, &input_dst.buffer, 0, x.byte_len())
            }
            Source::Host(x) => {
                queue.write_buffer(&input_dst.buffer, 0, bytemuck::cast_slice(x.input.data()))
            }
        }
        // The initial state: h into parity 0 of the double buffer, c in place.
        match source {
            Source::Host(x) => {
                for (at, given, slab) in [(0, x.h_0, h_slab), (ws.c_offset, x.c_0, c_slab)] {
                    match given {
                        Some(v) => {
                            queue.write_buffer(&ws.state, at, bytemuck::cast_slice(v.data()))
                        }
                        None => enc.clear_buffer(&ws.state, at, Some(slab)),
                    }
                }
            }
            Source::Gpu(_, InitialState::Given { h_0, c_0 }) => {
                enc.copy_buffer_to_buffer(&h_0.buffer, 0, &ws.state, 0, h_slab);
                enc.copy_buffer_to_buffer(&c_0.buffer, 0, &ws.state, ws.c_offset, c_slab);
            }
            Source::Gpu(_, InitialState::Carry) => {
                enc.copy_buffer_to_buffer(&state.h_n.buffer, 0, &ws.state, 0, h_slab);
                enc.copy_buffer_to_buffer(&state.c_n.buffer, 0, &ws.state, ws.c_offset, c_slab);
            }
            Source::Gpu(_, InitialState::Zeros) => {
                enc.clear_buffer(&ws.state, 0, Some(h_slab));
                enc.clear_buffer(&ws.state, ws.c_offset, Some(c_slab));
            }
        }
        let train = ws.bptt.as_ref().filter(|_| training);
        if let Some(tr) = train {
            enc.copy_buffer_to_buffer(&ws.state, ws.c_offset, &tr.carries, tr.at.c0, c_slab);
        }
        let lens: Vec<u32> = match lengths {
            Some(l) => l.iter().map(|&v| v as u32).collect(),
            None => vec![t as u32; b],
        };
        queue.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lens));

        // One pass for each layer's input projection and one for its steps, so
        // that profiling can time them apart; all in the same submit.
        if let Some([(bg, groups), _]) = &ws.permutes {
            let mut pass = self.begin_pass(enc, "batch-first input", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        // A unidirectional stack runs as a wavefront where the workspace
        // has one (and, training, where its saved activations were packed
        // for it).
        let wave = match (&ws.wave, train, &self.wave) {
            (Some(wave), None, Some((_, packed))) => Some((wave, &wave.bind_group, packed, None)),
            (Some(wave), Some(tr), Some((_, packed))) => tr
                .wave
                .as_ref()
                .map(|tw| (wave, &tw.forward, packed, Some(tr))),
            _ => None,
        };
        if let Some((wave, bind_group, packed, train)) = wave {
            // Every layer's weights into the buffer the wavefront reads
            // (copies, in queue order), layer 0's input projection, then T +
            // L - 1 dispatches, each running layer l's step s - l; then the
            // last layer's output into the workspace's.
            let h = cfg.hidden_size;
            let bytes = self.precision.bytes();
            let (hh, block) = (
                (4 * h * h) as u64 * bytes,
                wavefront_block(h) as u64 * bytes,
            );
            for (l, gl) in self.layers.iter().enumerate() {
                let at = l as u64 * block;
                if l > 0 {
                    enc.copy_buffer_to_buffer(&gl.w_ih, 0, packed, at, hh);
                }
                enc.copy_buffer_to_buffer(&gl.w_hh, 0, packed, at + hh, hh);
                enc.copy_buffer_to_buffer(&gl.bias, 0, packed, at + 2 * hh, (8 * h) as u64 * bytes);
            }
            {
                let (gemm, gemm_bg, groups) = &ws.gemm[0];
                let mut pass =
                    self.begin_pass(enc, "input projection", Some(Phase::InputProjection));
                gemm.encode(ctx, &mut pass, gemm_bg, *groups);
            }
            {
                let mut pass = self.begin_pass(enc, "lstm wavefront steps", Some(Phase::Steps));
                let kernel = match train {
                    Some(_) => &wave.pipelines.train,
                    None => &wave.pipelines.infer,
                };
                for s in 0..t + layers - 1 {
                    let offset = match train {
                        Some(tr) => tr.wave_forward_offset(s),
                        None => ws.layout.offset(wave_entry(layers, t, s)),
                    };
                    kernel.encode_at(ctx, &mut pass, bind_group, &[offset], wave.groups);
                }
            }
            let last = ws.ys[layers - 1].byte_len();
            enc.copy_buffer_to_buffer(
                &wave.outputs,
                (layers - 1) as u64 * last,
                &ws.ys[layers - 1].buffer,
                0,
                last,
            );
        }
        for l in (0..layers).filter(|_| wave.is_none()) {
            // Training with input dropout projects X̃ = X ⊙ m_x, a masked copy.
            let masked = train.and_then(|tr| tr.input_masks.get(l));
            if let Some(m) = masked {
                let x = if l == 0 { &ws.input } else { &ws.ys[l - 1] };
                enc.copy_buffer_to_buffer(&x.buffer, 0, &m.x, 0, x.byte_len());
                let (kernel, bg, groups) = &m.forward;
                let mut pass = self.begin_pass(enc, "input dropout", None);
                kernel.encode(ctx, &mut pass, bg, *groups);
            }
            {
                let (gemm, gemm_bg, groups) = match masked {
                    Some(m) => &m.projection,
                    None => &ws.gemm[l],
                };
                let mut pass =
                    self.begin_pass(enc, "input projection", Some(Phase::InputProjection));
                gemm.encode(ctx, &mut pass, gemm_bg, *groups);
            }
            // A layer-normalised LSTM: the input norm over every row, and a
            // second dispatch per step (the norms and the cell).
            let ln = match (&ws.ln, &self.layer_norm) {
                (Some(space), Some(kernels)) => Some(match train {
                    Some(tr) => {
                        let lt = tr.ln.as_ref().expect("layer-norm training dispatches");
                        (
                            &kernels.input_train,
                            &lt.input[l],
                            &kernels.step_train,
                            &lt.steps[l],
                            space,
                        )
                    }
                    None => (
                        &kernels.input,
                        &space.input[l],
                        &kernels.step,
                        &space.steps[l],
                        space,
                    ),
                }),
                _ => None,
            };
            let step_offset = |s: usize| match train {
                Some(tr) => tr.step_offset(l, s),
                None => ws.layout.offset(step_entry(layers, t, l, s)),
            };
            if let Some((input, input_bg, _, _, space)) = ln {
                let mut pass = self.begin_pass(enc, "input norm", None);
                input.encode_at(ctx, &mut pass, input_bg, &[step_offset(0)], space.rows);
            }
            // With a hidden projection each step is two dispatches: the cell, then
            // h_t = m_t · W_hrᵀ.
            let mut pass = self.begin_pass(enc, "lstm steps", Some(Phase::Steps));
            for s in 0..t {
                let (offset, step_bg, proj_bg) = match train {
                    Some(tr) => (tr.step_offset(l, s), &tr.steps[l], tr.hidden_projs.get(l)),
                    None => (
                        ws.layout.offset(step_entry(layers, t, l, s)),
                        &ws.steps[l],
                        ws.hidden_projs.get(l),
                    ),
                };
                ws.step.encode(
                    ctx,
                    &mut pass,
                    train.is_some(),
                    step_bg,
                    offset,
                    ws.step_groups,
                );
                if let (Some(proj), Some(bg)) = (&ws.hidden_proj, proj_bg) {
                    proj.encode(ctx, &mut pass, bg, offset, ws.hidden_proj_groups);
                }
                if let Some((_, _, cell, cell_bg, space)) = ln {
                    cell.encode_at(ctx, &mut pass, cell_bg, &[offset], space.cells);
                }
            }
        }
        if let Some([_, (bg, groups)]) = &ws.permutes {
            let mut pass = self.begin_pass(enc, "batch-first output", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        // h_T sits in the parity T % 2 half of the double buffer.
        enc.copy_buffer_to_buffer(
            &ws.state,
            (t % 2) as u64 * h_slab,
            &state.h_n.buffer,
            0,
            h_slab,
        );
        enc.copy_buffer_to_buffer(&ws.state, ws.c_offset, &state.c_n.buffer, 0, c_slab);
    }

    /// Prepares (T, B) for training and encodes a training forward from
    /// `input` and `state` into `enc`; returns the workspace index.
    pub(in crate::gpu) fn encode_train_forward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        lengths: Option<&[usize]>,
        seed: u64,
        state: InitialState<'_>,
    ) -> Result<usize> {
        let (t, b) = check_shapes(&self.config, input.shape(), None, None, lengths)?;
        let idx = self.prepare(t, b, true, false)?;
        let ws = &mut self.workspaces[idx];
        let tr = ws.bptt.as_mut().expect("prepared for training");
        tr.set_seed(&self.ctx, &self.config, t, b, seed, &ws.lengths);
        self.last_train = Some((t, b));
        self.encode_forward(enc, idx, Source::Gpu(input, state), lengths, true);
        Ok(idx)
    }

    /// The final (h_n, c_n) buffers of the passes at batch size `batch`.
    pub(in crate::gpu) fn final_state(&self, batch: usize) -> (&GpuTensor, &GpuTensor) {
        let s = self.state(batch);
        (&s.h_n, &s.c_n)
    }
}
