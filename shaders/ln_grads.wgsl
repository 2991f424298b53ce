// A layer-normalised LSTM layer's gradients after its backward steps
// (ln_step_backward.wgsl saved d_pre and dĉ per row; see ln_common.wgsl):
//
// `input_backward`, one workgroup per row n: the input norm's backward,
//   dA = LN_ih'(d_pre), into d_gates, which the dW_ih and dX GEMMs read
//   (the dW_hh GEMM has already read dR there).
// `param_grads`, one invocation per (direction, gate row k of 4H): sums
//   over the T·B rows
//     dγ_ih = Σ d_pre ⊙ ih_hat   dβ_ih = Σ d_pre   dγ_hh = Σ d_pre ⊙ hh_hat
//     dβ_hh = Σ d_pre            db_ih = db_hh = Σ d_pre
//   and, for k < H, dγ_c = Σ dĉ ⊙ ĉ and dβ_c = Σ dĉ. Each invocation
//   walks the rows in order; neighbouring invocations read neighbouring
//   columns, so every row's read is coalesced.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> ln: array<f32>;                 // [D, 18H]
@group(0) @binding(2) var<storage, read> saved: array<f32>;              // see ln_common.wgsl
@group(0) @binding(3) var<storage, read_write> d_gates: array<vec4<f32>>; // [N, H]
@group(0) @binding(4) var<storage, read_write> ln_grad: array<f32>;      // [D, 18H], as `ln`
@group(0) @binding(5) var<storage, read_write> bias_grad: array<f32>;    // [2, D·4H]

fn vec_at(at: u32) -> vec4<f32> {
    return vec4<f32>(ln[at], ln[at + 1u], ln[at + 2u], ln[at + 3u]);
}

fn saved4(at: u32) -> vec4<f32> {
    return vec4<f32>(saved[at], saved[at + 1u], saved[at + 2u], saved[at + 3u]);
}

@compute @workgroup_size(WG, 1, 1)
fn input_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let n = grid_row(wg, groups);
    if (n >= ln_rows()) {
        return;
    }
    let lid = lid3.x;
    let hid = p.hidden;
    let d = n % p.dirs;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        let dx = saved4(at_d_pre(n) + k) * vec_at(gain_ih(d) + k);
        s1 += sum4(dx);
        s2 += dot(dx, saved4(at_ih_hat(n) + k));
    }
    let m1 = group_sum(s1, lid) / f32(4u * hid);
    let m2 = group_sum(s2, lid) / f32(4u * hid);
    let rstd = saved[at_rstd(n)];
    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        let dx = saved4(at_d_pre(n) + k) * vec_at(gain_ih(d) + k);
        d_gates[n * hid + j] = (dx - vec4<f32>(m1) - saved4(at_ih_hat(n) + k) * m2) * rstd;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn param_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let hid = p.hidden;
    let g4 = 4u * hid;
    let i = grid_row(wg, groups) * WG + lid.x;
    if (i >= p.dirs * g4) {
        return;
    }
    let d = i / g4;
    let k = i % g4;
    var s_b = 0.0;
    var s_ih = 0.0;
    var s_hh = 0.0;
    var s_cb = 0.0;
    var s_cg = 0.0;
    for (var r = 0u; r < p.seq_len * p.batch; r++) {
        let n = r * p.dirs + d;
        let dp = saved[at_d_pre(n) + k];
        s_b += dp;
        s_ih += dp * saved[at_ih_hat(n) + k];
        s_hh += dp * saved[at_hh_hat(n) + k];
        if (k < hid) {
            let dc = saved[at_d_chat(n) + k];
            s_cb += dc;
            s_cg += dc * saved[at_c_hat(n) + k];
        }
    }
    ln_grad[gain_ih(d) + k] = s_ih;
    ln_grad[bias_ih(d) + k] = s_b;
    ln_grad[gain_hh(d) + k] = s_hh;
    ln_grad[bias_hh(d) + k] = s_b;
    if (k < hid) {
        ln_grad[gain_c(d) + k] = s_cg;
        ln_grad[bias_c(d) + k] = s_cb;
    }
    bias_grad[d * g4 + k] = s_b;
    bias_grad[(p.dirs + d) * g4 + k] = s_b;
}
