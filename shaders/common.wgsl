// Helpers shared by every kernel. This file is prepended to each kernel's
// source at build time (src/gpu/kernels/mod.rs), never copied into it.

// Logistic sigmoid, finite and exact at saturation for every finite input.
// The argument is clamped first: exp() of a large value is undefined in some
// drivers' SPIR-V, and |x| > 88 is already 0 or 1 in f32.
fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(x, -88.0, 88.0)));
}

// Hyperbolic tangent, saturation-safe: some drivers return NaN from the
// built-in tanh() at large |x|. This mirrors the CPU path's f32 tanh
// (src/real.rs): an odd Taylor polynomial for |x| < 1/4, where the exp form
// would cancel, and 1 - 2/(e^{2|x|} + 1) elsewhere, with |x| clamped to 20
// (tanh(20) rounds to 1 in f32).
fn tanh_safe(x: f32) -> f32 {
    let a = min(abs(x), 20.0);
    let x2 = x * x;
    let p = (((62.0 / 2835.0) * x2 - 17.0 / 315.0) * x2 + 2.0 / 15.0) * x2 - 1.0 / 3.0;
    let small = x + x * x2 * p;
    let large = sign(x) * (1.0 - 2.0 / (exp(2.0 * a) + 1.0));
    return select(large, small, a < 0.25);
}

// The dropout hash of src/dropout.rs, bit for bit: the PCG-RXS-M-XS
// permutation chained over (seed_lo, seed_hi, layer, t, b, unit).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn mask_hash(seed_lo: u32, seed_hi: u32, layer: u32, t: u32, b: u32, unit: u32) -> u32 {
    var h = pcg_hash(seed_lo);
    h = pcg_hash(h ^ seed_hi);
    h = pcg_hash(h ^ layer);
    h = pcg_hash(h ^ t);
    h = pcg_hash(h ^ b);
    return pcg_hash(h ^ unit);
}

// Dropout for one element: 0, or `scale` = 1/(1-p) when its hash reaches
// `threshold` (see dropout::keep_threshold).
struct Dropout {
    enabled: u32,
    threshold: u32,
    scale: f32,
    seed_lo: u32,
    seed_hi: u32,
    layer: u32,
    _pad0: u32,
    _pad1: u32,
}

// The per-step uniform of the step kernels, forward (`lstm_step.wgsl`,
// `lstm_proj.wgsl`) and backward (`lstm_step_backward.wgsl`,
// `lstm_proj_backward.wgsl`); `StepParams` in src/gpu/kernels/lstm_step.rs
// mirrors it.
struct StepParams {
    step: u32,        // s: forward 0..T (t = s, or T-1-s in reverse); backward 0..=T
    parity: u32,      // states (h, or the backward carries) are read from [parity], written to [1 - parity]
    seq_len: u32,     // T
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    slot: u32,        // layer · D: this layer's first state slot
    slots: u32,       // L · D
    dropout: Dropout, // the mask on this layer's output (training, inner layers)
    h_out: u32,       // width of h: P with a hidden projection, else H
    act: u32,         // the cell activation: 0 tanh, 1 relu (see cell_act)
    rmask: u32,       // training with recurrent dropout: where this layer's mask
                      // [D, B, H_out] (f32 bits) starts in the lengths buffer; 0 = none
    cells: u32,       // inference asking for the per-step cell states: where the
                      // last layer's [T, B, D, H] starts in `state`; 0 = none
    cell: u32,        // 0 LSTM, 1 GRU (see gru_cell)
    ln: u32,          // layer norm: where R [D, B, H, 4] (the raw recurrent products)
                      // starts in `state`; 0 = a plain cell (see ln_step.wgsl)
    _pad1: u32,
    _pad2: u32,
}

// A GRU step (nn.GRU) from the four pre-activation slots a GRU's padded
// weights give (src/gpu/lstm/gru.rs): W_ih's rows are (r, z, n, 0) and
// W_hh's (r, z, 0, n), and the input projection's bias holds
// (b_ir + b_hr, b_iz + b_hz, b_in, b_hn), so
//   pre = (W_ir x + W_hr h + b_r,  W_iz x + W_hz h + b_z,  W_in x + b_in,  W_hn h + b_hn)
//   r = σ(pre.x)  z = σ(pre.y)  n = tanh(pre.z + r ⊙ pre.w)  h' = (1 - z) ⊙ n + z ⊙ h.
fn gru_cell(pre: vec4<f32>, h_old: f32) -> f32 {
    let g = gru_gates(pre);
    return (1.0 - g.y) * g.z + g.y * h_old;
}

// The activated GRU gates a training step saves: (r, z, n, W_hn h + b_hn).
fn gru_gates(pre: vec4<f32>) -> vec4<f32> {
    let r = sigmoid(pre.x);
    return vec4<f32>(r, sigmoid(pre.y), tanh_safe(pre.z + r * pre.w), pre.w);
}

// A GRU's backward at one valid step, from dh (the gradient reaching h_t),
// the saved gates g = (r, z, n, W_hn h + b_hn) and h_{t-1}: the gate
// gradients (dr, dz, dn, dn ⊙ r) in the four slots, so that dG·W_ih and
// dG·W_hh over the padded weights are dX and the recurrent part of
// dh_{t-1}; the rest of dh_{t-1} is dh ⊙ z.
fn gru_backward(dh: f32, g: vec4<f32>, h_prev: f32) -> vec4<f32> {
    let dn = dh * (1.0 - g.y) * (1.0 - g.z * g.z);
    let dz = dh * (h_prev - g.z) * g.y * (1.0 - g.y);
    let dr = dn * g.w * g.x * (1.0 - g.x);
    return vec4<f32>(dr, dz, dn, dn * g.x);
}

// The cell activation of g and of c in h = o ⊙ act(c): tanh, or relu (act = 1).
fn cell_act(x: f32, act: u32) -> f32 {
    if (act == 1u) {
        return max(x, 0.0);
    }
    return tanh_safe(x);
}

// act'(x) from y = act(x): 1 - y² for tanh; for relu 1 where y > 0, else 0.
fn cell_act_grad(y: f32, act: u32) -> f32 {
    if (act == 1u) {
        return select(0.0, 1.0, y > 0.0);
    }
    return 1.0 - y * y;
}

fn dropout_scale(dr: Dropout, t: u32, b: u32, unit: u32) -> f32 {
    if (dr.enabled == 0u) {
        return 1.0;
    }
    if (mask_hash(dr.seed_lo, dr.seed_hi, dr.layer, t, b, unit) >= dr.threshold) {
        return dr.scale;
    }
    return 0.0;
}

// Per-training-step scalars, one storage buffer shared by the loss and the
// optimizer kernels. The host writes the first eight fields before each step;
// the kernels write the rest, which the host reads back only when asked.
struct TrainScalars {
    lr: f32,           // learning rate of this step (after the schedule)
    bias1: f32,        // Adam: 1 - β1^t
    bias2: f32,        // Adam: 1 - β2^t
    inv_count: f32,    // 1 / (elements or targets the loss averages over)
    clip_max: f32,     // max global gradient norm; 0 = no clipping
    first: f32,        // 1 on the first optimizer step (SGD momentum buffers start at g)
    step_index: u32,   // optimizer steps completed before this one
    scaling: u32,      // loss scaling: 0 off, 1 static, 2 dynamic (f16 training)
    loss: f32,         // out: the loss
    grad_norm: f32,    // out: global L2 norm of the gradients, before clipping
    clip_coef: f32,    // out: the factor stored gradients are multiplied by: clipping / grad_scale
    bad_step: u32,     // out, sticky: 1 + the first step whose loss was not finite; 0 = none
    grad_scale: f32,   // GPU-owned: the loss scale (1 without scaling); `clip` updates it
    growth_count: u32, // GPU-owned: steps in a row without an overflow (dynamic scaling)
    skipped: u32,      // out: steps skipped for non-finite gradients
    found_inf: u32,    // out: 1 when this step's gradients were not finite (scaling only)
}

// True for ±inf and NaN, by the bits (NaN comparisons may be optimised away).
fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}
