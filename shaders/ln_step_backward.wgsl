// The second dispatch of a layer-normalised LSTM's backward step, after
// lstm_step_backward.wgsl (with StepParams.ln) has formed the recurrent
// carry dh_carry = dR_{prev} · W_hh (⊙ m_h) into the carries buffer. For
// the time t of backward step s, per row (b, direction), with the forward's
// saved rows (ln_common.wgsl):
//
//   dh    = dy_t ⊙ mask + dh_carry
//   y     = act(ĉ ⊙ γ_c + β_c)           do = dh ⊙ y      dĉ = dh ⊙ o ⊙ act'(y)
//   dc    = LN_c'(dĉ) + dc_carry         (the norm's backward, below)
//   d_pre = (dc ⊙ g ⊙ i(1-i), dc ⊙ c_{t-1} ⊙ f(1-f), dc ⊙ i ⊙ act'(g), do ⊙ o(1-o))
//   dR    = LN_hh'(d_pre)                → d_gates, which the next step's
//                                          carry product and dW_hh read
//   dc_carry = dc ⊙ f
//
// where a norm's backward, for y = v̂ ⊙ γ + β with v̂ = LN(v), is
// dv = (dy ⊙ γ − mean(dy ⊙ γ) − v̂ ⊙ mean(dy ⊙ γ ⊙ v̂)) / σ over the row.
// d_pre and dĉ are saved for the layer's parameter gradients and the input
// norm's backward (ln_grads.wgsl). One workgroup per (b, direction): grid
// (B, D); see ln_step.wgsl for why the row's reductions need their own
// dispatch. A padded step writes zeros and leaves the carries as they are.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates: array<vec4<f32>>;        // [N, H]: saved i, f, g, o
@group(0) @binding(2) var<storage, read> c_saved: array<f32>;            // [N, H]
@group(0) @binding(3) var<storage, read> ln: array<f32>;                 // [D, 18H]
@group(0) @binding(4) var<storage, read_write> saved: array<f32>;        // see ln_common.wgsl
@group(0) @binding(5) var<storage, read> dh_in: array<f32>;              // dy [T, B, D·H]
@group(0) @binding(6) var<storage, read_write> d_gates: array<vec4<f32>>; // [N, H]: dR
@group(0) @binding(7) var<storage, read_write> carries: array<f32>;      // see backward_common.wgsl
@group(0) @binding(8) var<storage, read> lengths: array<u32>;            // [B]

fn vec_at(at: u32) -> vec4<f32> {
    return vec4<f32>(ln[at], ln[at + 1u], ln[at + 2u], ln[at + 3u]);
}

fn saved4(at: u32) -> vec4<f32> {
    return vec4<f32>(saved[at], saved[at + 1u], saved[at + 2u], saved[at + 3u]);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let b = wg.x;
    let d = wg.y;
    let hid = p.hidden;
    let g4 = 4u * hid;
    let t = time_of(p.step, d);
    let n = (t * p.batch + b) * p.dirs + d;
    let st = ((p.slot + d) * p.batch + b) * hid;
    let row_stride = p.batch * p.dirs;
    let valid = t < lengths[b];

    // dĉ, and the sums of the cell norm's backward.
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let g = gates[n * hid + j];
        let unit = d * hid + j;
        let dh = dh_in[(t * p.batch + b) * p.dirs * hid + unit] * dropout_scale(p.dropout, t, b, unit)
            + carries[at_dh_carry(1u - p.parity, st + j)];
        let chat = saved[at_c_hat(n) + j];
        let yv = cell_act(chat * ln[gain_c(d) + j] + ln[bias_c(d) + j], p.act);
        let dchat = dh * g.w * cell_act_grad(yv, p.act);
        let dx = dchat * ln[gain_c(d) + j];
        s1 += dx;
        s2 += dx * chat;
        if (valid) {
            saved[at_d_chat(n) + j] = dchat;
            // do, kept in d_pre's o slot until the gates' gradients below.
            saved[at_d_pre(n) + 4u * j + 3u] = dh * yv;
        }
    }
    let m1 = group_sum(s1, lid) / f32(hid);
    let m2 = group_sum(s2, lid) / f32(hid);
    let rstd = saved[at_rstd(n) + 1u];
    let rstd_c = saved[at_rstd(n) + 2u];

    // dc, the gates' gradients and the sums of the recurrent norm's backward.
    var s3 = 0.0;
    var s4 = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        let g = gates[n * hid + j];
        let chat = saved[at_c_hat(n) + j];
        let dc = (saved[at_d_chat(n) + j] * ln[gain_c(d) + j] - m1 - chat * m2) * rstd_c
            + carries[at_dc_carry(st + j)];
        // c_{t-1}: the state entering step t in this direction's visiting order.
        var c_prev = carries[at_c0(st + j)];
        if (d == 0u && t > 0u) {
            c_prev = c_saved[(n - row_stride) * hid + j];
        }
        if (d == 1u && t + 1u < p.seq_len) {
            c_prev = c_saved[(n + row_stride) * hid + j];
        }
        let d_o = saved[at_d_pre(n) + k + 3u];
        let dp = vec4<f32>(
            dc * g.z * g.x * (1.0 - g.x),
            dc * c_prev * g.y * (1.0 - g.y),
            dc * g.x * cell_act_grad(g.z, p.act),
            d_o * g.w * (1.0 - g.w),
        );
        let dx = dp * vec_at(gain_hh(d) + k);
        s3 += sum4(dx);
        s4 += dot(dx, saved4(at_hh_hat(n) + k));
        if (valid) {
            carries[at_dc_carry(st + j)] = dc * g.y;
            for (var e = 0u; e < 4u; e++) {
                saved[at_d_pre(n) + k + e] = dp[e];
            }
        }
    }
    let m3 = group_sum(s3, lid) / f32(g4);
    let m4 = group_sum(s4, lid) / f32(g4);

    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        if (!valid) {
            d_gates[n * hid + j] = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                saved[at_d_pre(n) + k + e] = 0.0;
            }
            saved[at_d_chat(n) + j] = 0.0;
            continue;
        }
        let dx = saved4(at_d_pre(n) + k) * vec_at(gain_hh(d) + k);
        d_gates[n * hid + j] = (dx - vec4<f32>(m3) - saved4(at_hh_hat(n) + k) * m4) * rstd;
    }
}
