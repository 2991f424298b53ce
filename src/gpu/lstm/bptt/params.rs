//! The uniform parameters of backpropagation through time: where each
//! entry sits in the training uniform buffer, and the backward GEMMs of a
//! layer with their parameters.

use crate::config::LstmConfig;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::kernels::{
    ColumnSumParams, DropoutParams, GEMM_K_CHUNK, GemmParams, GemmPlan, LstmGemms, PermuteParams,
    StepParams, wavefront_block,
};
use crate::gpu::workspace::{GpuLayer, Uniforms, step_params};

/// Entries of the training uniform buffer.
pub(super) struct BpttEntries {
    layers: usize,
    seq_len: usize,
    /// Room for each layer's backward GEMMs: dW_ih, db, dX and dW_hh (and
    /// dW_hr with a hidden projection) per direction, two entries each (a
    /// product and the column sum of its slices when its K is split).
    gemms: usize,
    /// The stack trains in a wavefront: T + L - 1 forward and T + L
    /// backward entries follow the permutes.
    wave: bool,
}

impl BpttEntries {
    pub fn new(cfg: &LstmConfig, seq_len: usize, batch: usize, wave: bool) -> Self {
        let per_dir = if cfg.proj_size > 0 { 2 } else { 1 };
        let chunks = ((seq_len * batch) as u32).div_ceil(GEMM_K_CHUNK).max(1) as usize;
        BpttEntries {
            layers: cfg.num_layers,
            seq_len,
            gemms: 2 * (3 + per_dir * cfg.num_directions()) * chunks,
            wave,
        }
    }
    pub fn step(&self, layer: usize, s: usize) -> usize {
        layer * self.seq_len + s
    }
    pub fn back(&self, layer: usize, s: usize) -> usize {
        self.layers * self.seq_len + layer * (self.seq_len + 1) + s
    }
    pub fn gemm(&self, layer: usize, which: usize) -> usize {
        self.layers * (2 * self.seq_len + 1) + layer * self.gemms + 2 * which
    }
    /// The column sum of product `which`'s slices, when its K is split.
    pub fn gemm_sum(&self, layer: usize, which: usize) -> usize {
        self.gemm(layer, which) + 1
    }
    pub fn permute(&self, which: usize) -> usize {
        self.layers * (2 * self.seq_len + 1 + self.gemms) + which
    }
    /// Wavefront forward step `s` (0..T + L - 1).
    pub fn wave_forward(&self, s: usize) -> usize {
        self.permute(2) + s
    }
    /// Wavefront backward step `s` (0..T + L).
    pub fn wave_backward(&self, s: usize) -> usize {
        self.wave_forward(self.seq_len + self.layers - 1) + s
    }
    pub fn count(&self) -> usize {
        match self.wave {
            true => self.wave_backward(self.seq_len + self.layers),
            false => self.permute(2),
        }
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

/// The backward GEMMs of one layer, in encoding order. With `packed` =
/// Some(l), layer l of a wavefront stack, whose gate gradients, saved h and
/// input (the layer below's output) sit at layer offsets in buffers that
/// hold every layer ([L, T·B, ...]).
pub(super) fn backward_gemms(
    cfg: &LstmConfig,
    w: &GpuLayer,
    rows: usize,
    packed: Option<usize>,
) -> Vec<(Gemm, GemmParams)> {
    let mut ops = layer_gemms(cfg, w, rows);
    if let Some(l) = packed {
        let (h, rows) = (cfg.hidden_size as u32, rows as u32);
        let l = l as u32;
        let d_gates = l * rows * 4 * h;
        for (kind, params) in &mut ops {
            match kind {
                Gemm::WeightIh => {
                    params.a_off += d_gates;
                    params.b_off += l.saturating_sub(1) * rows * h;
                }
                Gemm::WeightHh => {
                    params.a_off += d_gates;
                    params.b_off += l * rows * h;
                }
                Gemm::Bias => params.b_off += d_gates,
                Gemm::Input => params.a_off += d_gates,
                Gemm::WeightHr => unreachable!("a wavefront stack has no projection"),
            }
        }
    }
    ops.into_iter()
        .flat_map(|(kind, p)| p.split_k().into_iter().map(move |q| (kind, q)))
        .collect()
}

/// The column sum that computes a [`Gemm::Bias`] product: db = 1ᵀ · dG over
/// its K rows (a block of at most `GEMM_K_CHUNK`, added to the last block's
/// with `ACCUMULATE`), into both halves of the bias pair.
pub(super) fn bias_sum(p: &GemmParams) -> ColumnSumParams {
    ColumnSumParams {
        rows: p.k,
        cols: p.n,
        ld: p.ldb,
        src_off: p.b_off,
        pair: 1,
        accumulate: u32::from(p.flags & GemmParams::ACCUMULATE != 0),
        dst_off: 0,
        _pad: 0,
    }
}

/// [`backward_gemms`] of a layer with its own buffers.
fn layer_gemms(cfg: &LstmConfig, w: &GpuLayer, rows: usize) -> Vec<(Gemm, GemmParams)> {
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

/// A layer's backward product as it runs: the bias gradient's column sum,
/// or a GEMM as planned (its tile, and its K split or not).
pub(super) enum Planned {
    Sum(ColumnSumParams),
    Gemm(GemmPlan),
}

/// Every layer's [`backward_gemms`], planned: the tuner picks each GEMM's
/// tile and split (measuring on first use of a class).
pub(super) fn plan_gemms(
    ctx: &GpuContext,
    gemms: &LstmGemms,
    cfg: &LstmConfig,
    weights: &[GpuLayer],
    rows: usize,
    wave: bool,
) -> Result<Vec<Vec<(Gemm, Planned)>>> {
    weights
        .iter()
        .enumerate()
        .map(|(l, w)| {
            backward_gemms(cfg, w, rows, wave.then_some(l))
                .into_iter()
                .map(|(kind, params)| {
                    let role = match kind {
                        Gemm::Bias => return Ok((kind, Planned::Sum(bias_sum(&params)))),
                        Gemm::WeightIh => &gemms.weight_ih,
                        Gemm::WeightHh => &gemms.weight_hh,
                        Gemm::Input => &gemms.input,
                        Gemm::WeightHr => &gemms.weight_hr,
                    };
                    Ok((kind, Planned::Gemm(role.plan(ctx, &params)?)))
                })
                .collect()
        })
        .collect()
}

/// All training parameters for one pass with dropout seed `seed`, with the
/// backward products as `plans` says.
pub(super) fn bptt_uniforms(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    plans: &[Vec<(Gemm, Planned)>],
    e: &BpttEntries,
    t: usize,
    b: usize,
    seed: u64,
) -> Uniforms {
    let (dirs, layers) = (cfg.num_directions(), cfg.num_layers);
    let hout = cfg.hidden_out();
    let mut u = Uniforms::new(ctx, e.count());
    let masks = crate::gpu::lstm::masks::MaskLayout::new(cfg, b);
    for (l, plan) in plans.iter().enumerate() {
        // Dropout on every layer's output but the last.
        let p = if l + 1 < layers { cfg.dropout } else { 0.0 };
        let dropout = DropoutParams::new(p, seed, l);
        for s in 0..t {
            let mut sp = step_params(cfg, l, s, t, b);
            sp.dropout = dropout;
            sp.rmask = masks.recurrent[l];
            u.put(e.step(l, s), &sp);
        }
        for s in 0..=t {
            let mut bp = step_params(cfg, l, s, t, b);
            bp.dropout = dropout;
            bp.rmask = masks.recurrent[l];
            u.put(e.back(l, s), &bp);
        }
        for (which, (_, planned)) in plan.iter().enumerate() {
            match planned {
                Planned::Sum(sum) => u.put(e.gemm(l, which), sum),
                Planned::Gemm(g) => {
                    u.put(e.gemm(l, which), &g.params);
                    if let Some(sum) = &g.sum {
                        u.put(e.gemm_sum(l, which), sum);
                    }
                }
            }
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
    if e.wave {
        // One uniform per wavefront dispatch: `slot` is the packed weights'
        // block, and the dropout mask's layer is the kernel's grid z.
        let p = if layers > 1 { cfg.dropout } else { 0.0 };
        let wave = |s: usize| StepParams {
            step: s as u32,
            slot: wavefront_block(cfg.hidden_size) as u32,
            dropout: DropoutParams::new(p, seed, 0),
            ..step_params(cfg, 0, 0, t, b)
        };
        for s in 0..t + layers - 1 {
            u.put(e.wave_forward(s), &wave(s));
        }
        for s in 0..t + layers {
            u.put(e.wave_backward(s), &wave(s));
        }
    }
    u
}
