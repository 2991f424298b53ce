//! A host forward pass too long for one binding, split over time: when a
//! per-sequence buffer ([T, B, ...]) would exceed the device's
//! `max_storage_buffer_binding_size` (128 MiB under WebGPU's limits), a
//! unidirectional LSTM runs the sequence in chunks of steps that fit,
//! carrying h and c from one chunk to the next. Every step computes exactly
//! what it would in one pass.

use super::GpuLstm;
use crate::error::Result;
use crate::input::LstmInput;
use crate::reference::LstmOutput;
use crate::tensor::Tensor;

impl GpuLstm {
    /// Steps per chunk when a forward over (T, B) must be split over time:
    /// `None` when it fits in one pass, or when the LSTM is bidirectional
    /// (the reverse direction needs the whole sequence; the one pass then
    /// reports the limit it exceeds).
    pub(super) fn time_chunk(&self, seq_len: usize, batch: usize) -> Option<usize> {
        let cfg = &self.config;
        if cfg.bidirectional {
            return None;
        }
        let limits = self.ctx.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // Bytes per time step of the buffers that grow with T: the input,
        // the input projection, each layer's output, LSTMP's m and the
        // wavefront's outputs.
        let d = cfg.num_directions();
        let per_step = [
            4 * cfg.input_size,
            self.precision.bytes() as usize * d * 4 * cfg.hidden_size,
            4 * d * cfg.hidden_out(),
            if cfg.proj_size > 0 {
                4 * d * cfg.hidden_size
            } else {
                0
            },
            // The wavefront's outputs, all layers in one buffer.
            if self.wave.is_some() {
                4 * cfg.num_layers * cfg.hidden_size
            } else {
                0
            },
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as u64
            * batch as u64;
        if per_step == 0 || seq_len as u64 * per_step <= limit {
            return None;
        }
        // At least one step; a step that does not fit fails in its pass.
        Some(((limit / per_step) as usize).max(1))
    }

    /// [`GpuLstm::forward_host`] in chunks of `chunk` steps (one submit
    /// each), carrying the state between them.
    pub(super) async fn forward_host_chunked_async(
        &mut self,
        x: &LstmInput<'_, f32>,
        (seq_len, batch): (usize, usize),
        chunk: usize,
    ) -> Result<LstmOutput<f32>> {
        let cfg = self.config.clone();
        let (inp, hout) = (cfg.input_size, cfg.hidden_out());
        let data = x.input.data();
        let mut output = vec![0.0f32; seq_len * batch * hout];
        // The per-step cell states when asked for (H wide: D = 1 here).
        let h = cfg.hidden_size;
        let mut cells = vec![
            0.0f32;
            if x.cell_states {
                seq_len * batch * h
            } else {
                0
            }
        ];
        let mut state: Option<(Tensor<f32>, Tensor<f32>)> = None;
        for t0 in (0..seq_len).step_by(chunk) {
            let n = chunk.min(seq_len - t0);
            // This chunk's input, in the caller's layout.
            let part = if cfg.batch_first {
                let mut v = Vec::with_capacity(batch * n * inp);
                for b in 0..batch {
                    let row = (b * seq_len + t0) * inp;
                    v.extend_from_slice(&data[row..row + n * inp]);
                }
                Tensor::new([batch, n, inp], v)?
            } else {
                Tensor::new(
                    [n, batch, inp],
                    data[t0 * batch * inp..(t0 + n) * batch * inp].to_vec(),
                )?
            };
            let mut sub = LstmInput::new(&part);
            sub.cell_states = x.cell_states;
            match &state {
                Some((h, c)) => sub = sub.with_state(h, c),
                None => {
                    sub.h_0 = x.h_0;
                    sub.c_0 = x.c_0;
                }
            }
            // Steps past a sequence's length are padding in every chunk after
            // it ends (a length of 0 there), which carries its state.
            let lengths: Option<Vec<usize>> = x
                .lengths
                .map(|l| l.iter().map(|&len| len.saturating_sub(t0).min(n)).collect());
            let idx = self.pass(super::Source::Host(&sub), lengths.as_deref(), None, true)?;
            let out = self.read_outputs_async(idx).await?;
            // This chunk's steps into their place, in the caller's layout.
            let place = |all: &mut [f32], got: &[f32], w: usize| {
                if cfg.batch_first {
                    for b in 0..batch {
                        let dst = (b * seq_len + t0) * w;
                        all[dst..dst + n * w].copy_from_slice(&got[b * n * w..(b + 1) * n * w]);
                    }
                } else {
                    all[t0 * batch * w..(t0 + n) * batch * w].copy_from_slice(got);
                }
            };
            place(&mut output, out.output.data(), hout);
            if let Some(c) = &out.cell_states {
                place(&mut cells, c.data(), h);
            }
            state = Some((out.h_n, out.c_n));
        }
        let (h_n, c_n) = state.expect("at least one chunk");
        let shape = if cfg.batch_first {
            [batch, seq_len, hout]
        } else {
            [seq_len, batch, hout]
        };
        let cell_states = if x.cell_states {
            let [a, b, _] = shape;
            Some(Tensor::new([a, b, h], cells)?)
        } else {
            None
        };
        Ok(LstmOutput {
            output: Tensor::new(shape, output)?,
            h_n,
            c_n,
            cell_states,
        })
    }
}
