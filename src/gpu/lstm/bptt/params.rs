//! The uniform parameters of backpropagation through time: where each
//! entry sits in the training uniform buffer, and the backward GEMMs of a
//! layer with their parameters.

use crate::config::LstmConfig;
use crate::gpu::GpuContext;
use crate::gpu::kernels::{DropoutParams, GemmParams, PermuteParams};
use crate::gpu::workspace::{GpuLayer, Uniforms, step_params};

/// Entries of the training uniform buffer.
pub(super) struct BpttEntries {
    layers: usize,
    seq_len: usize,
    /// Room for each layer's backward GEMMs: dW_ih, db, dX and dW_hh (and
    /// dW_hr with a hidden projection) per direction.
    gemms: usize,
}

impl BpttEntries {
    pub fn new(cfg: &LstmConfig, seq_len: usize) -> Self {
        let per_dir = if cfg.proj_size > 0 { 2 } else { 1 };
        BpttEntries {
            layers: cfg.num_layers,
            seq_len,
            gemms: 3 + per_dir * cfg.num_directions(),
        }
    }
    pub fn step(&self, layer: usize, s: usize) -> usize {
        layer * self.seq_len + s
    }
    pub fn back(&self, layer: usize, s: usize) -> usize {
        self.layers * self.seq_len + layer * (self.seq_len + 1) + s
    }
    pub fn gemm(&self, layer: usize, which: usize) -> usize {
        self.layers * (2 * self.seq_len + 1) + layer * self.gemms + which
    }
    pub fn permute(&self, which: usize) -> usize {
        self.layers * (2 * self.seq_len + 1 + self.gemms) + which
    }
    pub fn count(&self) -> usize {
        self.permute(2)
    }
}

/// The four kinds of product after a layer's backward steps.
#[derive(Clone, Copy)]
pub(super) enum Gemm {
    WeightIh,
    WeightHh,
    Bias,
    Input,
    WeightHr,
}

/// The backward GEMMs of one layer, in encoding order.
pub(super) fn backward_gemms(
    cfg: &LstmConfig,
    w: &GpuLayer,
    rows: usize,
) -> Vec<(Gemm, GemmParams)> {
    let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
    let hout = cfg.hidden_out() as u32;
    let (n4, inp, rows) = ((dirs * 4 * h) as u32, w.input_size as u32, rows as u32);
    let mut ops = vec![(
        // dW_ih [D·4H, in] = dGᵀ [D·4H, T·B] · X [T·B, in]
        Gemm::WeightIh,
        GemmParams {
            m: n4,
            n: inp,
            k: rows,
            lda: n4,
            ldb: inp,
            ldc: inp,
            flags: GemmParams::TRANS_A,
            ..Default::default()
        },
    )];
    for d in 0..dirs as u32 {
        // dW_hh[d] [4H, H_out] = dG[d]ᵀ [4H, T·B] · H_prev[d] [T·B, H_out],
        // already in the step kernels' rows-by-unit layout.
        let h = h as u32;
        ops.push((
            Gemm::WeightHh,
            GemmParams {
                m: 4 * h,
                n: hout,
                k: rows,
                lda: n4,
                ldb: dirs as u32 * hout,
                ldc: hout,
                a_off: d * 4 * h,
                b_off: d * hout,
                c_off: d * 4 * h * hout,
                flags: GemmParams::TRANS_A,
                ..Default::default()
            },
        ));
    }
    if cfg.bias {
        // db [2, D·4H] = 1ᵀ [2, T·B] · dG [T·B, D·4H]: b_ih and b_hh enter
        // the gates as one sum, so their gradients are equal; the two rows of
        // ones are one row read twice (lda = 0), and the two rows of db are
        // the two halves of the bias buffer.
        ops.push((
            Gemm::Bias,
            GemmParams {
                m: 2,
                n: n4,
                k: rows,
                lda: 0,
                ldb: n4,
                ldc: n4,
                ..Default::default()
            },
        ));
    }
    // dX [T·B, in] = dG [T·B, D·4H] · W_ih [D·4H, in]
    ops.push((
        Gemm::Input,
        GemmParams {
            m: rows,
            n: inp,
            k: n4,
            lda: n4,
            ldb: inp,
            ldc: inp,
            ..Default::default()
        },
    ));
    if cfg.proj_size > 0 {
        let (p, h, dirs) = (cfg.proj_size as u32, h as u32, dirs as u32);
        for d in 0..dirs {
            // dW_hr[d] [P, H] = dh[d]ᵀ [P, T·B] · M[d] [T·B, H]
            ops.push((
                Gemm::WeightHr,
                GemmParams {
                    m: p,
                    n: h,
                    k: rows,
                    lda: dirs * p,
                    ldb: dirs * h,
                    ldc: h,
                    a_off: d * p,
                    b_off: d * h,
                    c_off: d * p * h,
                    flags: GemmParams::TRANS_A,
                    ..Default::default()
                },
            ));
        }
    }
    ops
}

/// All training parameters for one pass with dropout seed `seed`.
pub(super) fn bptt_uniforms(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    weights: &[GpuLayer],
    e: &BpttEntries,
    t: usize,
    b: usize,
    seed: u64,
) -> Uniforms {
    let (dirs, layers) = (cfg.num_directions(), cfg.num_layers);
    let hout = cfg.hidden_out();
    let mut u = Uniforms::new(ctx, e.count());
    for (l, layer) in weights.iter().enumerate() {
        // Dropout on every layer's output but the last.
        let p = if l + 1 < layers { cfg.dropout } else { 0.0 };
        let dropout = DropoutParams::new(p, seed, l);
        for s in 0..t {
            let mut sp = step_params(cfg, l, s, t, b);
            sp.dropout = dropout;
            u.put(e.step(l, s), &sp);
        }
        for s in 0..=t {
            let mut bp = step_params(cfg, l, s, t, b);
            bp.dropout = dropout;
            u.put(e.back(l, s), &bp);
        }
        for (which, (_, params)) in backward_gemms(cfg, layer, t * b).iter().enumerate() {
            u.put(e.gemm(l, which), params);
        }
    }
    let permute = |rows: usize, cols: usize, inner: usize| PermuteParams {
        rows: rows as u32,
        cols: cols as u32,
        inner: inner as u32,
        _pad: 0,
    };
    u.put(e.permute(0), &permute(b, t, dirs * hout));
    u.put(e.permute(1), &permute(t, b, cfg.input_size));
    u
}
