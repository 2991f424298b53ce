//! The variational dropout masks of a GPU training pass (DESIGN.md §9).
//!
//! They live in the workspace's lengths buffer, after the B lengths, as f32
//! bits: every layer's recurrent mask [D, B, H_out], then every layer's
//! input mask [B, in_l]. The step kernels read the recurrent one (the
//! forward product, the saved h_{t-1} and the backward carry) at
//! `StepParams.rmask`; `shaders/mask_rows.wgsl` applies the input one. The
//! step kernels already bind WebGPU's eight storage buffers, so the masks
//! share a binding with the lengths rather than take one of their own.
//!
//! The host draws them with [`VariationalMask`], bit for bit the masks of
//! the reference and the CPU engine, once per dropout seed: L·D·B·H_out +
//! Σ B·in_l hashes, against the T·L·D·B·4H·(H + in) multiply-adds of the
//! pass they serve.

use crate::config::LstmConfig;
use crate::dropout::{MaskKind, VariationalMask};

/// Where each mask sits in the lengths buffer, in u32 words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::gpu) struct MaskLayout {
    /// Per layer: the recurrent mask's first word, 0 without recurrent dropout.
    pub recurrent: Vec<u32>,
    /// Per layer: the input mask's first word, 0 without input dropout.
    pub input: Vec<u32>,
    /// Words in the buffer: B lengths and every mask.
    pub words: usize,
}

impl MaskLayout {
    pub fn new(cfg: &LstmConfig, batch: usize) -> Self {
        let layers = cfg.num_layers;
        let mut at = batch;
        let mut take = |on: bool, n: usize| {
            if on {
                at += n;
                (at - n) as u32
            } else {
                0
            }
        };
        let rec_len = cfg.num_directions() * batch * cfg.hidden_out();
        let recurrent = (0..layers)
            .map(|_| take(cfg.recurrent_dropout > 0.0, rec_len))
            .collect();
        let input = (0..layers)
            .map(|l| take(cfg.input_dropout > 0.0, batch * cfg.layer_input_size(l)))
            .collect();
        MaskLayout {
            recurrent,
            input,
            words: at,
        }
    }

    /// The masks of dropout seed `seed`, as the words after the lengths.
    pub fn draw(&self, cfg: &LstmConfig, batch: usize, seed: u64) -> Vec<u32> {
        let mut words = vec![0u32; self.words - batch];
        let mut put = |at: u32, mask: Vec<f32>| {
            let at = at as usize - batch;
            for (w, m) in words[at..at + mask.len()].iter_mut().zip(mask) {
                *w = m.to_bits();
            }
        };
        for l in 0..cfg.num_layers {
            if self.recurrent[l] != 0 {
                let units = cfg.hidden_out();
                let per_dir = batch * units;
                for d in 0..cfg.num_directions() {
                    let mask = VariationalMask {
                        p: cfg.recurrent_dropout,
                        seed,
                        kind: MaskKind::Recurrent,
                        layer: l,
                        direction: d,
                    }
                    .mask::<f32>(batch, units);
                    put(self.recurrent[l] + (d * per_dir) as u32, mask);
                }
            }
            if self.input[l] != 0 {
                let mask = VariationalMask {
                    p: cfg.input_dropout,
                    seed,
                    kind: MaskKind::Input,
                    layer: l,
                    direction: 0,
                }
                .mask::<f32>(batch, cfg.layer_input_size(l));
                put(self.input[l], mask);
            }
        }
        words
    }
}
