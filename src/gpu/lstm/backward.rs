//! Command encoding of [`GpuLstm`]'s backward pass: per layer, from the last
//! down, the backward step dispatches, then the weight-gradient GEMMs; or,
//! for a stack trained in a wavefront, every layer's steps in T + L
//! dispatches, then every layer's GEMMs.

use super::GpuLstm;
use crate::gpu::GpuTensor;
use crate::gpu::profiler::Phase;

impl GpuLstm {
    /// Encodes backpropagation through the saved forward of workspace `idx`;
    /// the caller has put d_output and the carried d_h_n, d_c_n in place.
    pub(super) fn encode_backward(&self, enc: &mut wgpu::CommandEncoder, idx: usize) {
        let ctx = &self.ctx;
        let cfg = &self.config;
        let ws = &self.workspaces[idx];
        let tr = ws.bptt.as_ref().expect("training workspace");
        let t = ws.seq_len;
        if let Some([(bg, groups), _]) = &tr.permutes {
            let mut pass = self.begin_pass(enc, "batch-first d_output", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        if let Some(wave) = &tr.wave {
            // A wavefront: T + L dispatches, each running one backward step
            // of every layer in the wave (layer l lags the top by L - 1 - l
            // steps), then every layer's weight gradients.
            {
                let mut pass =
                    self.begin_pass(enc, "lstm backward wavefront", Some(Phase::BackwardSteps));
                for s in 0..t + cfg.num_layers {
                    let offset = tr.wave_backward_offset(s);
                    wave.back_kernel.encode(
                        ctx,
                        &mut pass,
                        &wave.backward,
                        offset,
                        wave.back_groups,
                    );
                }
            }
            let mut pass = self.begin_pass(enc, "weight gradients", Some(Phase::BackwardGemms));
            for (kernel, bg, groups) in tr.gemms.iter().flatten() {
                kernel.encode(ctx, &mut pass, bg, *groups);
            }
        }
        for l in (0..cfg.num_layers).rev().filter(|_| tr.wave.is_none()) {
            {
                // A layer-normalised LSTM's second dispatch per step.
                let ln = match (&tr.ln, &self.layer_norm, &ws.ln) {
                    (Some(lt), Some(lk), Some(space)) => Some((&lk.back, &lt.back[l], space.cells)),
                    _ => None,
                };
                let mut pass =
                    self.begin_pass(enc, "lstm backward steps", Some(Phase::BackwardSteps));
                // With a hidden projection each step is two dispatches: the P-wide
                // dh_t, then the cell through dm_t = dh_t · W_hr.
                for s in 0..=t {
                    let offset = tr.back_offset(l, s);
                    if let (Some((_, hidden_proj_back)), Some(bg)) =
                        (&self.hidden_proj, tr.hidden_proj_back.get(l))
                    {
                        hidden_proj_back.encode(
                            ctx,
                            &mut pass,
                            bg,
                            offset,
                            ws.hidden_proj_back_groups,
                        );
                    }
                    tr.back_kernel
                        .encode(ctx, &mut pass, &tr.back[l], offset, tr.back_groups);
                    // A layer-normalised LSTM: the cell's backward, after the carry.
                    if let Some((kernel, bg, groups)) = ln.filter(|_| s < t) {
                        kernel.encode_at(ctx, &mut pass, bg, &[offset], groups);
                    }
                }
            }
            let mut pass = self.begin_pass(enc, "weight gradients", Some(Phase::BackwardGemms));
            for (kernel, bg, groups) in &tr.gemms[l] {
                kernel.encode(ctx, &mut pass, bg, *groups);
            }
        }
        if let Some([_, (bg, groups)]) = &tr.permutes {
            let mut pass = self.begin_pass(enc, "batch-first d_input", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        // dh_0 and dc_0, as the last backward steps left them.
        for (at, dst) in [(tr.at.d_h0, &tr.d_h0), (tr.at.d_c0, &tr.d_c0)] {
            enc.copy_buffer_to_buffer(&tr.carries, at, &dst.buffer, 0, dst.byte_len());
        }
    }

    /// Encodes the backward pass of workspace `idx` from `d_output` (no
    /// gradient on h_n, c_n).
    pub(in crate::gpu) fn encode_train_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        d_output: &GpuTensor,
    ) {
        let tr = self.workspaces[idx]
            .bptt
            .as_ref()
            .expect("training workspace");
        enc.copy_buffer_to_buffer(&d_output.buffer, 0, &tr.dy.buffer, 0, d_output.byte_len());
        enc.clear_buffer(&tr.carries, tr.at.dh, Some(tr.d_h0.byte_len()));
        enc.clear_buffer(&tr.carries, tr.at.dc, Some(tr.d_c0.byte_len()));
        self.encode_backward(enc, idx);
    }
}
