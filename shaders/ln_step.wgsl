// The second dispatch of a layer-normalised LSTM step, after the step
// kernel (lstm_step.wgsl with StepParams.ln) has stored the raw recurrent
// products R = h̃_{t-1} · W_hhᵀ:
//
//   pre = LN(R) ⊙ γ_hh + β_hh + gates_x        (gates_x from ln_input.wgsl)
//   i, f, o = σ(pre)   g = act(pre_g)
//   c_t = f ⊙ c_{t-1} + i ⊙ g                  (c_t itself is carried)
//   h_t = o ⊙ act(LN(c_t) ⊙ γ_c + β_c)
//
// Why two dispatches: each norm reduces over a whole row (4H gates, then H
// cells) while the step kernel spreads one row's units over many
// workgroups to fill the GPU at small batch; a workgroup cannot wait for
// others within a dispatch, so the row's reductions run here, one
// workgroup per (b, direction): grid (B, D). This dispatch's work is
// O(H) per row against the product's O(H²), so it is the cheap half.
//
// Padded steps (t >= lengths[b]) carry h and c and write 0 output, as the
// plain step does. `main_train` also saves the gates, c and the norms'
// rows and 1/σ, and applies inter-layer dropout to the output.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<f32>>;          // [N, H]
@group(0) @binding(2) var<storage, read> ln: array<f32>;                     // [D, 18H]
@group(0) @binding(3) var<storage, read_write> state: array<f32>;            // h [2, L·D, B, H], c, R, cell states
@group(0) @binding(4) var<storage, read_write> y: array<f32>;                // [T, B, D·H]
@group(0) @binding(5) var<storage, read> lengths: array<u32>;                // [B]
// Training only (any buffer otherwise):
@group(0) @binding(6) var<storage, read_write> saved: array<f32>;            // see ln_common.wgsl
@group(0) @binding(7) var<storage, read_write> gates_saved: array<vec4<f32>>; // [N, H]: i, f, g, o
@group(0) @binding(8) var<storage, read_write> c_saved: array<f32>;          // [N, H]: c after step t

fn c_at(i: u32) -> u32 {
    return 2u * p.slots * p.batch * p.hidden + i;
}

fn vec_at(at: u32) -> vec4<f32> {
    return vec4<f32>(ln[at], ln[at + 1u], ln[at + 2u], ln[at + 3u]);
}

fn rec_at(at: u32) -> vec4<f32> {
    return vec4<f32>(state[at], state[at + 1u], state[at + 2u], state[at + 3u]);
}

fn cell_row(wg: vec3<u32>, lid: u32, train: bool) {
    let b = wg.x;
    let d = wg.y;
    var t = p.step;
    if (d == 1u) {
        t = p.seq_len - 1u - p.step;
    }
    let hid = p.hidden;
    let g4 = 4u * hid;
    let slot = p.slot + d;
    let h_prev = (p.parity * p.slots + slot) * p.batch * hid + b * hid;
    let h_next = ((1u - p.parity) * p.slots + slot) * p.batch * hid + b * hid;
    let ci = (slot * p.batch + b) * hid;
    let n = (t * p.batch + b) * p.dirs + d;
    let out = (t * p.batch + b) * p.dirs * hid + d * hid;
    let r_at = p.ln + (d * p.batch + b) * g4;
    // Every invocation runs the reductions (they hold barriers); only valid
    // rows write what they give.
    let valid = t < lengths[b];

    // LN over the row's 4H recurrent products.
    var s = 0.0;
    for (var j = lid; j < hid; j += WG) {
        s += sum4(rec_at(r_at + 4u * j));
    }
    let mean = group_sum(s, lid) / f32(g4);
    var q = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let v = rec_at(r_at + 4u * j) - vec4<f32>(mean);
        q += dot(v, v);
    }
    let rstd = 1.0 / sqrt(group_sum(q, lid) / f32(g4) + LN_EPS);

    // The gates and c_t; the activated gates replace R (this invocation's
    // own elements) for the output below.
    var cs = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let k = 4u * j;
        let rhat = (rec_at(r_at + k) - vec4<f32>(mean)) * rstd;
        let pre = rhat * vec_at(gain_hh(d) + k) + vec_at(bias_hh(d) + k) + gates_x[n * hid + j];
        let g = vec4<f32>(sigmoid(pre.x), sigmoid(pre.y), cell_act(pre.z, p.act), sigmoid(pre.w));
        let c = g.y * state[c_at(ci + j)] + g.x * g.z;
        cs += c;
        if (valid) {
            state[c_at(ci + j)] = c;
            for (var e = 0u; e < 4u; e++) {
                state[r_at + k + e] = g[e];
            }
            if (train) {
                for (var e = 0u; e < 4u; e++) {
                    saved[at_hh_hat(n) + k + e] = rhat[e];
                }
                gates_saved[n * hid + j] = g;
                c_saved[n * hid + j] = c;
            }
        }
    }
    // LN over the row's H cells.
    let mean_c = group_sum(cs, lid) / f32(hid);
    var qc = 0.0;
    for (var j = lid; j < hid; j += WG) {
        let v = state[c_at(ci + j)] - mean_c;
        qc += v * v;
    }
    let rstd_c = 1.0 / sqrt(group_sum(qc, lid) / f32(hid) + LN_EPS);

    let cells = ((t * p.batch + b) * p.dirs + d) * hid;
    if (!valid) {
        // A padded step: h and c carry over, the output is 0.
        for (var j = lid; j < hid; j += WG) {
            state[h_next + j] = state[h_prev + j];
            y[out + j] = 0.0;
            if (p.cells != 0u) {
                state[p.cells + cells + j] = 0.0;
            }
            if (train) {
                gates_saved[n * hid + j] = vec4<f32>(0.0);
                c_saved[n * hid + j] = state[c_at(ci + j)];
                for (var e = 0u; e < 4u; e++) {
                    saved[at_hh_hat(n) + 4u * j + e] = 0.0;
                }
                saved[at_c_hat(n) + j] = 0.0;
            }
        }
        return;
    }
    for (var j = lid; j < hid; j += WG) {
        let c = state[c_at(ci + j)];
        let chat = (c - mean_c) * rstd_c;
        let o = state[r_at + 4u * j + 3u];
        let h = o * cell_act(chat * ln[gain_c(d) + j] + ln[bias_c(d) + j], p.act);
        state[h_next + j] = h;
        if (p.cells != 0u) {
            state[p.cells + cells + j] = c;
        }
        if (train) {
            y[out + j] = h * dropout_scale(p.dropout, t, b, d * hid + j);
            saved[at_c_hat(n) + j] = chat;
        } else {
            y[out + j] = h;
        }
    }
    if (train && lid == 0u) {
        saved[at_rstd(n) + 1u] = rstd;
        saved[at_rstd(n) + 2u] = rstd_c;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    cell_row(wg, lid.x, false);
}

@compute @workgroup_size(WG, 1, 1)
fn main_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    cell_row(wg, lid.x, true);
}
