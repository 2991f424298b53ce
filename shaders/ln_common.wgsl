// Shared by the layer-normalised LSTM's kernels (ln_input.wgsl,
// ln_step.wgsl, ln_step_backward.wgsl, ln_grads.wgsl), placed before each;
// each declares the uniform `p` (StepParams) these functions read.
//
// LN(v) = (v − mean(v)) / sqrt(var(v) + ε) over one row, with the biased
// variance and ε = 1e-5 (nn.LayerNorm's), as src/reference/layer_norm.rs.
// A row is one (t, b, direction): 4H gate pre-activations, laid out by
// unit (4j + q, q = i, f, g, o) as everywhere on the GPU, or H cell values.
// A workgroup of WG invocations owns a row; invocation `lid` takes units
// lid, lid + WG, ..., and the row's sums meet in a tree in workgroup memory.
//
// A layer's parameters, per direction d, from ln_base(d) (f32, [D, 18H]):
//   γ_ih [4H] | β_ih [4H] | γ_hh [4H] | β_hh [4H] | γ_c [H] | β_c [H]
// with the 4H-long ones by unit, like the gates.
//
// What a training forward saves for the backward pass, and the backward
// pass's per-row gradients, in one f32 buffer per layer (`saved`), for
// N = T·B·D rows, row n = (t·B + b)·D + d:
//   ih_hat [N, 4H] | hh_hat [N, 4H] | c_hat [N, H] | d_pre [N, 4H] | d_chat [N, H] | rstd [N, 3]
// where the hats are the normalised rows (before gain and bias), d_pre the
// gradient of the gates' pre-activation, d_chat that of the normalised
// cell after its gain and bias, and rstd = (1/σ_ih, 1/σ_hh, 1/σ_c).

const LN_EPS: f32 = 1e-5;

var<workgroup> red: array<f32, WG>;

// Σ v over the workgroup, returned to every invocation. Called by every
// invocation, in uniform control flow (it holds barriers).
fn group_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn ln_rows() -> u32 {
    return p.seq_len * p.batch * p.dirs;
}
fn at_ih_hat(n: u32) -> u32 {
    return n * 4u * p.hidden;
}
fn at_hh_hat(n: u32) -> u32 {
    return (ln_rows() + n) * 4u * p.hidden;
}
fn at_c_hat(n: u32) -> u32 {
    return 8u * ln_rows() * p.hidden + n * p.hidden;
}
fn at_d_pre(n: u32) -> u32 {
    return 9u * ln_rows() * p.hidden + n * 4u * p.hidden;
}
fn at_d_chat(n: u32) -> u32 {
    return 13u * ln_rows() * p.hidden + n * p.hidden;
}
fn at_rstd(n: u32) -> u32 {
    return 14u * ln_rows() * p.hidden + 3u * n;
}

// Where direction d's parameters start, and each vector within them.
fn ln_base(d: u32) -> u32 {
    return d * 18u * p.hidden;
}
fn gain_ih(d: u32) -> u32 {
    return ln_base(d);
}
fn bias_ih(d: u32) -> u32 {
    return ln_base(d) + 4u * p.hidden;
}
fn gain_hh(d: u32) -> u32 {
    return ln_base(d) + 8u * p.hidden;
}
fn bias_hh(d: u32) -> u32 {
    return ln_base(d) + 12u * p.hidden;
}
fn gain_c(d: u32) -> u32 {
    return ln_base(d) + 16u * p.hidden;
}
fn bias_c(d: u32) -> u32 {
    return ln_base(d) + 17u * p.hidden;
}

fn sum4(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

// The row index of a 2-D grid of one workgroup per row (rows past the
// count are none: the caller returns for them).
fn grid_row(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.x + wg.y * groups.x;
}
