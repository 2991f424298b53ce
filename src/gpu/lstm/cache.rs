//! The per-shape cache of [`GpuLstm`]: a workspace of buffers and bind
//! groups per (T, B), made on the first pass of that shape and reused, the
//! final states per batch size, and lookups into them.

use super::GpuLstm;
use crate::config::Cell;
use crate::error::{LstmError, Result};
use crate::gpu::lstm::bptt::{BpttKernels, BpttSpace};
use crate::gpu::params::upload_layers;
use crate::gpu::tensor::map_and_read_async;
use crate::gpu::workspace::{Kernels, Workspace};
use crate::gpu::{GpuLstmOutput, GpuTensor, Precision};
use crate::reference::LstmOutput;
use crate::tensor::Tensor;
use crate::weights::LayerWeights;

/// The final states per batch size, where [`InitialState::Carry`] reads.
pub(super) struct State {
    pub batch: usize,
    pub h_n: GpuTensor,
    pub c_n: GpuTensor,
}

/// How many shapes keep their workspace before the oldest is dropped.
const MAX_WORKSPACES: usize = 4;

impl GpuLstm {
    /// The workspace for (T, B), made on first use, with its training
    /// buffers when `training`; `cells` asks for one that returns the
    /// per-step cell states (inference only: a workspace of its own).
    pub(super) fn prepare(
        &mut self,
        seq_len: usize,
        batch: usize,
        training: bool,
        cells: bool,
    ) -> Result<usize> {
        if !self.states.iter().any(|s| s.batch == batch) {
            let cfg = &self.config;
            let slots = cfg.num_layers * cfg.num_directions();
            self.states.push(State {
                batch,
                h_n: GpuTensor::empty(&self.ctx, "h_n", &[slots, batch, cfg.hidden_out()])?,
                c_n: GpuTensor::empty(&self.ctx, "c_n", &[slots, batch, cfg.hidden_size])?,
            });
        }
        let idx = match self
            .workspaces
            .iter()
            .position(|w| (w.seq_len, w.batch, w.cells.is_some()) == (seq_len, batch, cells))
        {
            Some(i) => i,
            None => {
                if self.workspaces.len() == MAX_WORKSPACES {
                    // Keep the workspace `backward` still needs.
                    let keep = self.last_train;
                    let victim = (0..self.workspaces.len())
                        .find(|&i| {
                            Some((self.workspaces[i].seq_len, self.workspaces[i].batch)) != keep
                        })
                        .expect("at most one workspace is kept");
                    self.workspaces.remove(victim);
                }
                let tile = self
                    .step_config_for(batch)?
                    .tile(batch, self.config.hidden_out());
                let step = self.step.pipelines(&self.ctx, tile);
                let hidden_proj = self
                    .hidden_proj
                    .as_mut()
                    .map(|(k, _)| k.pipeline(&self.ctx, tile.with_width(self.config.hidden_size)));
                let wave = self
                    .wave
                    .as_mut()
                    .map(|(k, weights)| (k.pipelines(&self.ctx, tile), &*weights));
                let kernels = Kernels {
                    gemms: &self.gemms,
                    wave,
                    step,
                    permute: &self.permute,
                    hidden_proj,
                    layer_norm: self.layer_norm.as_ref(),
                };
                let ws = Workspace::build(
                    &self.ctx,
                    &self.config,
                    &self.layers,
                    kernels,
                    seq_len,
                    batch,
                    cells,
                )?;
                self.workspaces.push(ws);
                self.workspaces.len() - 1
            }
        };
        if training && self.workspaces[idx].bptt.is_none() {
            if self.grads.is_none() {
                let zeros = |l: usize, _d: usize| {
                    let input = self.config.layer_input_size(l);
                    let four_h = self.config.gates() * self.config.hidden_size;
                    LayerWeights {
                        weight_ih: vec![0.0; four_h * input],
                        weight_hh: vec![0.0; four_h * self.config.hidden_out()],
                        bias_ih: None,
                        bias_hh: None,
                        weight_hr: None,
                        layer_norm: None,
                    }
                };
                self.grads = Some(upload_layers(
                    &self.ctx,
                    &self.config,
                    zeros,
                    "grad ",
                    Precision::F32,
                )?);
            }
            let back_tile = self.step_config_for(batch)?.back_tile(batch);
            let back = self.back.pipeline(&self.ctx, back_tile);
            let wave_back = match &self.wave {
                Some((_, weights)) => {
                    Some((self.back.pipeline(&self.ctx, back_tile.waved()), weights))
                }
                None => None,
            };
            let kernels = BpttKernels {
                gemms: &self.gemms,
                column_sum: &self.column_sum,
                split_sum: &self.split_sum,
                back,
                wave_back,
                permute: &self.permute,
                hidden_proj: self.hidden_proj.as_ref().map(|(_, back)| back),
                mask: self.mask.as_ref(),
                zero_slot: self.zero_slot.as_ref(),
                layer_norm: self.layer_norm.as_ref(),
            };
            let grads = self.grads.as_ref().expect("made above");
            let space = BpttSpace::build(
                &self.ctx,
                &self.config,
                &self.layers,
                grads,
                &self.workspaces[idx],
                kernels,
            )?;
            self.workspaces[idx].bptt = Some(space);
        }
        Ok(idx)
    }

    pub(super) fn state(&self, batch: usize) -> &State {
        self.states
            .iter()
            .find(|s| s.batch == batch)
            .expect("prepare() made the state")
    }

    pub(super) fn outputs(&self, idx: usize) -> GpuLstmOutput<'_> {
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        GpuLstmOutput {
            output: ws.output(),
            h_n: &state.h_n,
            c_n: &state.c_n,
        }
    }

    pub(super) async fn read_outputs_async(&self, idx: usize) -> Result<LstmOutput<f32>> {
        let out = self.outputs(idx);
        let shapes = [out.output.shape(), out.h_n.shape(), out.c_n.shape()];
        let ws = &self.workspaces[idx];
        let cfg = &self.config;
        let cells = [ws.seq_len, ws.batch, cfg.num_directions() * cfg.hidden_size];
        let mut shapes = shapes.to_vec();
        if ws.cells.is_some() {
            shapes.push(&cells);
        }
        let mut host = map_and_read_async(&self.ctx, &ws.staging, &shapes).await?;
        let cell_states = match ws.cells {
            Some(_) => {
                let c = host.pop().expect("four tensors");
                Some(if cfg.batch_first {
                    c.swap_first_two_axes()
                } else {
                    c
                })
            }
            None => None,
        };
        let c_n = self.cell_state(host.pop().expect("three tensors"))?;
        let h_n = host.pop().expect("three tensors");
        let output = host.pop().expect("three tensors");
        Ok(LstmOutput {
            output,
            h_n,
            c_n,
            cell_states,
        })
    }

    /// A cell state read back ([D·L, B, H]), or for a GRU, which has none,
    /// the empty [D·L, B, 0] of the host API.
    pub(super) fn cell_state(&self, c: Tensor<f32>) -> Result<Tensor<f32>> {
        match self.config.cell {
            Cell::Lstm => Ok(c),
            Cell::Gru => Tensor::new([c.shape()[0], c.shape()[1], 0], Vec::new()),
        }
    }

    pub(super) fn train_workspace(&self) -> Result<usize> {
        let (t, b) = self.last_train.ok_or_else(|| {
            LstmError::value("backward", "needs a training forward first (forward_train)")
        })?;
        Ok(self
            .workspaces
            .iter()
            .position(|w| (w.seq_len, w.batch) == (t, b) && w.bptt.is_some() && w.cells.is_none())
            .expect("the last training workspace is kept"))
    }

    pub(super) fn check_output_grads(
        &self,
        idx: usize,
        d_output: &[usize],
        d_h_n: Option<&[usize]>,
        d_c_n: Option<&[usize]>,
    ) -> Result<()> {
        let ws = &self.workspaces[idx];
        let want = ws.output().shape();
        if d_output != want {
            return Err(LstmError::shape("d_output", want, d_output));
        }
        let state = self.state(ws.batch);
        // A GRU's d_c_n, when given, is the empty [D·L, B, 0].
        let c_shape = match self.config.cell {
            Cell::Lstm => state.c_n.shape().to_vec(),
            Cell::Gru => vec![state.c_n.shape()[0], state.c_n.shape()[1], 0],
        };
        for (name, s, want) in [
            ("d_h_n", d_h_n, state.h_n.shape()),
            ("d_c_n", d_c_n, &c_shape[..]),
        ] {
            if let Some(s) = s.filter(|s| *s != want) {
                return Err(LstmError::shape(name, want, s));
            }
        }
        Ok(())
    }

    /// The time-major output and input gradient of workspace `idx`.
    pub(in crate::gpu) fn output_of(&self, idx: usize) -> &GpuTensor {
        self.workspaces[idx].output()
    }

    pub(in crate::gpu) fn d_input_of(&self, idx: usize) -> &GpuTensor {
        &self.workspaces[idx]
            .bptt
            .as_ref()
            .expect("training workspace")
            .d_input
    }
}
