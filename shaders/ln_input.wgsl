// The layer-normalised LSTM's input half, once per layer over every row
// (after the input projection GEMM, which here adds no bias):
//
//   gates[n] = LN(x̃_t · W_ihᵀ)[n] ⊙ γ_ih + β_ih + b_ih + b_hh
//
// in place, so that the step kernels add it to the recurrent half exactly
// where a plain LSTM adds X·W_ihᵀ + b. `main_train` also saves the
// normalised row and 1/σ (see ln_common.wgsl). One workgroup per row n =
// (t·B + b)·D + d, over a 2-D grid.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read_write> gates: array<vec4<f32>>; // [N, H]: x̃·W_ihᵀ in, as above out
@group(0) @binding(2) var<storage, read> ln: array<f32>;               // [D, 18H]
@group(0) @binding(3) var<storage, read> bias: array<f32>;             // [2, D·4H]: b_ih, b_hh by unit
@group(0) @binding(4) var<storage, read_write> saved: array<f32>;      // training only

fn vec_at(at: u32) -> vec4<f32> {
    return vec4<f32>(ln[at], ln[at + 1u], ln[at + 2u], ln[at + 3u]);
}

fn norm_row(n: u32, lid: u32, train: bool) {
    let hid = p.hidden;
    let g4 = 4u * hid;
    let d = n % p.dirs;
    var s = 0.0;
    for (var j = lid; j < hid; j += WG) {
        s += sum4(gates[n * hid + j]);
    }
    let mean = group_sum(s, lid) / f32(g4);
    var q = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let v = gates[n * hid + j] - vec4<f32>(mean);
        q += dot(v, v);
    }
    let rstd = 1.0 / sqrt(group_sum(q, lid) / f32(g4) + LN_EPS);
    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        let vhat = (gates[n * hid + j] - vec4<f32>(mean)) * rstd;
        var b = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            b[e] = bias[d * g4 + k + e] + bias[(p.dirs + d) * g4 + k + e];
        }
        gates[n * hid + j] = vhat * vec_at(gain_ih(d) + k) + vec_at(bias_ih(d) + k) + b;
        if (train) {
            for (var e = 0u; e < 4u; e++) {
                saved[at_ih_hat(n) + k + e] = vhat[e];
            }
        }
    }
    if (train && lid == 0u) {
        saved[at_rstd(n)] = rstd;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = grid_row(wg, groups);
    if (n >= ln_rows()) {
        return;
    }
    norm_row(n, lid.x, false);
}

@compute @workgroup_size(WG, 1, 1)
fn main_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = grid_row(wg, groups);
    if (n >= ln_rows()) {
        return;
    }
    norm_row(n, lid.x, true);
}
