// One step of backpropagation through time for one layer, both directions,
// walking the steps in reverse visiting order (the forward direction from
// t = T-1 down to 0, the reverse direction from 0 up to T-1):
//
//   dh_t = dy_t ⊙ mask + dh_carry,   dh_carry = dG_{prev} · W_hh  (dG of the step handled just before)
//   dc_t = dh_t ⊙ o ⊙ (1 - tanh²(c_t)) + dc_carry
//   dG_t = (dc_t ⊙ g ⊙ i(1-i),  dc_t ⊙ c_{t-1} ⊙ f(1-f),  dc_t ⊙ i ⊙ (1-g²),  dh_t ⊙ tanh(c_t) ⊙ o(1-o))
//   dc_carry = dc_t ⊙ f
//
// With the cell activation relu (StepParams.act), tanh above is relu and
// 1 - tanh², 1 - g² its derivative (from its output). With recurrent
// dropout, h_{t-1} entered the forward product as h ⊙ m_h, so
// dh_carry = (dG_prev · W_hh) ⊙ m_h, the mask read from the lengths buffer
// at StepParams.rmask.
//
// A padded step (t >= lengths[b]) writes dG = 0 and passes dh and dc
// through unchanged. The dispatch with step == T does no cell work: it
// finishes dh_0 (the recurrent product of the last dG) and dc_0.
//
// With a hidden projection (h_out = P < H), shaders/lstm_proj_backward.wgsl has
// already formed the P-wide dh_t (dy, mask and carry included) in the same
// step's first dispatch; this kernel takes dm_t = dh_t · W_hr in place of
// dh_t, and leaves dh_carry and dh_0 to that kernel.
//
// The kernel's product (dG_prev · W_hh, or with a hidden projection
// dh_t · W_hr) reduces over rows of a matrix whose columns are this kernel's
// units j, and both matrices keep those columns contiguous (W_hh rows by
// unit [D·4H, H], W_hr [D, P, H]). So a workgroup of WGS = JW · KS
// invocations owns JW consecutive columns (consecutive lanes read
// consecutive elements) and splits the reduction over KS slices (slice s
// takes every KS-th row), for RB batch rows. The slices' partial sums meet
// in workgroup memory, RC rows at a time; then slice s updates the cells of
// rows s, s + KS, ... Workgroups: (ceil(H / JW), ceil(B / RB), D).
//
// For a layer-normalised LSTM (StepParams.ln != 0) d_gates holds dR, the
// gradient of the raw recurrent product, so the product above is still the
// recurrent carry; this kernel stops there, and shaders/ln_step_backward.wgsl
// runs the step's cell (the step's second dispatch).
//
// With WAVE = 1 the same kernel runs a unidirectional stack's backward as a
// wavefront (see `Site` below): one dispatch runs a step of every layer.
//
// `store_t` (f32 or f16) is how the saved gates, W_hh and dG are stored;
// all arithmetic is f32. It and the tile JW, KS, RB, RC, WGS = JW · KS and
// WAVE are declared before this file by the kernel builder (`BackTile` in
// src/gpu/kernels/backward_step.rs).


@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates: array<vec4<store_t>>; // [T, B, D, H]: saved i, f, g, o
@group(0) @binding(2) var<storage, read> c_saved: array<f32>;         // [T, B, D, H]: c after step t
@group(0) @binding(3) var<storage, read> w_hh: array<store_t>;  // [D·4H, H_out]: rows by unit (4j + q), inputs k contiguous
// dy [T, B, D·H]; with a hidden projection, dh_t [T, B, D·P] from the first half.
@group(0) @binding(4) var<storage, read> dh_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> d_gates: array<vec4<store_t>>; // [T, B, D, H]
@group(0) @binding(6) var<storage, read_write> carries: array<f32>;   // see backward_common.wgsl
@group(0) @binding(7) var<storage, read> lengths: array<u32>;         // [B]
// Hidden projection only (any buffer otherwise):
@group(0) @binding(8) var<storage, read> w_hr: array<store_t>;        // [D, P, H]

var<workgroup> partial: array<f32, RC * WGS>;          // [RC][KS][JW]: partial sums of RC rows
var<workgroup> sums: array<f32, (1u + WAVE) * RB * JW>; // [1 + WAVE][RB][JW]: the products, per row and column

fn projecting() -> bool {
    return p.h_out != p.hidden;
}

// Where one workgroup works. Layer by layer (WAVE = 0) the grid's z is the
// direction and the uniform names the step. In a wavefront (WAVE = 1, a
// unidirectional stack without projection) z is the layer, dispatch s runs
// layer l's backward step s - (L - 1 - l), and every per-layer buffer holds
// all layers, [L, ...]: the saved gates and c and the gate gradients at
// l·T·B·H, the weights in the forward wavefront's packed blocks of p.slot
// elements (W_ih at 0, W_hh at 4H·H). A layer below the top takes its dy_t
// from the layer above's dG_t (written by the previous dispatch) times that
// layer's W_ih, in place of the dX GEMM.
struct Site {
    d: u32,
    slot: u32,       // state slot of this layer and direction
    step: u32,       // this layer's backward step, 0..=T
    parity: u32,
    runs: bool,      // false: this layer has no step in this dispatch
    base: u32,       // this layer's first element in gates, c_saved and d_gates
    w: u32,          // this layer's first element of W_hh in w_hh
    upper: bool,     // dy_t = dG_above(t) · W_ih_above (wavefront, below the top)
    up_base: u32,    // the layer above's first element in d_gates
    up_w: u32,       // the layer above's W_ih in w_hh
    dropout: Dropout,
}

fn site(wg: vec3<u32>) -> Site {
    var st: Site;
    st.dropout = p.dropout;
    if (WAVE == 0u) {
        st.d = wg.z;
        st.slot = p.slot + st.d;
        st.step = p.step;
        st.parity = p.parity;
        st.runs = true;
        return st;
    }
    let layer = wg.z;
    let top = p.slots - 1u;
    let lag = top - layer;
    st.slot = layer;
    st.runs = p.step >= lag && p.step - lag <= p.seq_len;
    st.step = p.step - lag;
    st.parity = st.step % 2u;
    let per = p.seq_len * p.batch * p.hidden;
    st.base = layer * per;
    st.w = layer * p.slot + 4u * p.hidden * p.hidden;
    st.upper = layer < top && st.step < p.seq_len;
    st.up_base = (layer + 1u) * per;
    st.up_w = (layer + 1u) * p.slot;
    // The mask on this layer's output; none on the top layer's.
    st.dropout.layer = layer;
    if (layer == top) {
        st.dropout.enabled = 0u;
    }
    return st;
}

// Σ_u Σ_q dG[t, b, u, q] · W[4u + q, col] over this slice's u, for rows
// b0 .. b0 + RB: W from element `w0`, rows by unit with `width` columns; dG
// of time t from vec4 element `g0` ([T, B, D, H]).
fn gate_product(acc: ptr<function, array<f32, RB>>, w0: u32, width: u32, g0: u32, d: u32, t: u32, col: u32, s: u32, b0: u32) {
    let hid = p.hidden;
    let bsz = p.batch;
    let last = bsz - 1u;
    for (var u = s; u < hid; u += KS) {
        let row = w0 + (d * hid + u) * 4u * width + col;
        let w = vec4<f32>(
            f32(w_hh[row]),
            f32(w_hh[row + width]),
            f32(w_hh[row + 2u * width]),
            f32(w_hh[row + 3u * width]),
        );
        for (var r = 0u; r < RB; r++) {
            let b = min(b0 + r, last);
            let dg = vec4<f32>(d_gates[g0 + ((t * bsz + b) * p.dirs + d) * hid + u]);
            (*acc)[r] += dot(w, dg);
        }
    }
}

// Sums the slices' partial products `acc` of rows b0 .. b0 + RB into
// sums[which][r][c]. Called by every invocation, in uniform control flow.
fn reduce_slices(acc: ptr<function, array<f32, RB>>, which: u32, c: u32, s: u32, lid: u32) {
    for (var c0 = 0u; c0 < RB; c0 += RC) {
        for (var rr = 0u; rr < RC; rr++) {
            partial[rr * WGS + lid] = (*acc)[c0 + rr];
        }
        workgroupBarrier();
        if (s < RC) {
            var total = 0.0;
            for (var k = 0u; k < KS; k++) {
                total += partial[(s * KS + k) * JW + c];
            }
            sums[(which * RB + c0 + s) * JW + c] = total;
        }
        workgroupBarrier();
    }
}

// The products for batch rows b0 .. b0 + RB at column `col` (0 where this
// step has none): (dG_{t_prev} · W_hh)[b, col] without a hidden projection,
// (dh_t · W_hr)[b, col] with one, into sums[0]; in a wavefront below the
// top, also dy_t = (dG_above(t) · W_ih_above)[b, col] into sums[1].
// Called by every invocation, in uniform control flow (it holds barriers).
fn product(st: Site, col: u32, c: u32, s: u32, b0: u32, lid: u32) {
    let hid = p.hidden;
    let bsz = p.batch;
    let last = bsz - 1u;
    let d = st.d;
    var acc: array<f32, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = 0.0;
    }
    if (col < hid && !projecting() && st.step > 0u) {
        gate_product(&acc, st.w, p.h_out, st.base, d, time_of(st.step - 1u, d), col, s, b0);
    }
    if (col < hid && projecting() && st.step < p.seq_len) {
        // Σ_k dh_t[b, k] · W_hr[k, col].
        let t = time_of(st.step, d);
        let np = p.h_out;
        for (var k = s; k < np; k += KS) {
            let w = f32(w_hr[(d * np + k) * hid + col]);
            for (var r = 0u; r < RB; r++) {
                let b = min(b0 + r, last);
                acc[r] = fma(w, dh_in[(t * bsz + b) * p.dirs * np + d * np + k], acc[r]);
            }
        }
    }
    reduce_slices(&acc, 0u, c, s, lid);
    if (WAVE == 1u) {
        for (var r = 0u; r < RB; r++) {
            acc[r] = 0.0;
        }
        if (col < hid && st.upper) {
            gate_product(&acc, st.up_w, hid, st.up_base, 0u, time_of(st.step, 0u), col, s, b0);
        }
        reduce_slices(&acc, 1u, c, s, lid);
    }
}

@compute @workgroup_size(WGS, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let st = site(wg);
    if (!st.runs) {
        return;
    }
    let d = st.d;
    let c = lid.x % JW;
    let s = lid.x / JW;
    let j = wg.x * JW + c;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let bsz = p.batch;
    let has_prev = st.step > 0u;
    var t_prev = 0u;
    if (has_prev) {
        t_prev = time_of(st.step - 1u, d);
    }
    product(st, j, c, s, b0, lid.x);
    if (j >= hid) {
        return;
    }

    for (var r = s; r < RB; r += KS) {
        let b = b0 + r;
        if (b >= bsz) {
            break;
        }
        let prod = sums[r * JW + c];
        let len = lengths[b];
        let state = (st.slot * bsz + b) * hid + j;
        if (p.cell == 1u) {
            // A GRU: dh_{t-1} = dG_prev · W_hh + dh_prev ⊙ z_prev, the second
            // term kept in the dc carry's place (a GRU has no c).
            var carry = carries[at_dh_carry(st.parity, state)];
            if (has_prev && t_prev < len) {
                // Recurrent dropout masks only the product's share.
                var rec = prod;
                if (p.rmask != 0u) {
                    rec *= bitcast<f32>(lengths[p.rmask + (d * bsz + b) * hid + j]);
                }
                carry = rec + carries[at_dc_carry(state)];
            }
            if (st.step == p.seq_len) {
                carries[at_d_h0(state)] = carry;
                carries[at_d_c0(state)] = 0.0;
                continue;
            }
            carries[at_dh_carry(1u - st.parity, state)] = carry;
            let t = time_of(st.step, d);
            let at = st.base + ((t * bsz + b) * p.dirs + d) * hid + j;
            if (t >= len) {
                d_gates[at] = vec4<store_t>(0.0);
                continue;
            }
            let unit = d * hid + j;
            var dy = 0.0;
            if (st.upper) {
                dy = sums[(RB + r) * JW + c];
            } else {
                dy = dh_in[(t * bsz + b) * p.dirs * hid + unit];
            }
            let dh = dy * dropout_scale(st.dropout, t, b, unit) + carry;
            let g = vec4<f32>(gates[at]);
            d_gates[at] = vec4<store_t>(gru_backward(dh, g, c_saved[at]));
            carries[at_dc_carry(state)] = dh * g.y;
            continue;
        }
        // Without a hidden projection h and c have the same shape, and this kernel
        // carries dh too.
        var carry = 0.0;
        if (!projecting()) {
            carry = carries[at_dh_carry(st.parity, state)];
            if (has_prev && t_prev < len) {
                carry = prod;
                // Recurrent dropout: h_{t-1} entered the product as h ⊙ m_h.
                if (p.rmask != 0u) {
                    carry *= bitcast<f32>(lengths[p.rmask + (d * bsz + b) * hid + j]);
                }
            }
            if (st.step == p.seq_len) {
                carries[at_d_h0(state)] = carry;
            } else {
                carries[at_dh_carry(1u - st.parity, state)] = carry;
            }
        }
        if (st.step == p.seq_len) {
            carries[at_d_c0(state)] = carries[at_dc_carry(state)];
            continue;
        }
        if (p.ln != 0u) {
            // A layer-normalised LSTM: the cell's backward, whose norms
            // reduce over whole rows, is shaders/ln_step_backward.wgsl's.
            continue;
        }
        let t = time_of(st.step, d);
        let at = st.base + ((t * bsz + b) * p.dirs + d) * hid + j;
        if (t >= len) {
            d_gates[at] = vec4<store_t>(0.0);
            continue;
        }
        // With a hidden projection, dm_t = dh_t · W_hr stands for dh_t.
        var dh = prod;
        if (!projecting()) {
            let unit = d * hid + j;
            var dy = 0.0;
            if (st.upper) {
                dy = sums[(RB + r) * JW + c];
            } else {
                dy = dh_in[(t * bsz + b) * p.dirs * hid + unit];
            }
            dh = dy * dropout_scale(st.dropout, t, b, unit) + carry;
        }
        let g = vec4<f32>(gates[at]);
        let c_t = c_saved[at];
        // c_{t-1}: the state entering step t in this direction's visiting order.
        var c_prev = carries[at_c0(state)];
        if (d == 0u && t > 0u) {
            c_prev = c_saved[at - bsz * p.dirs * hid];
        }
        if (d == 1u && t + 1u < p.seq_len) {
            c_prev = c_saved[at + bsz * p.dirs * hid];
        }
        let tc = cell_act(c_t, p.act);
        let dc = dh * g.w * cell_act_grad(tc, p.act) + carries[at_dc_carry(state)];
        d_gates[at] = vec4<store_t>(vec4<f32>(
            dc * g.z * g.x * (1.0 - g.x),
            dc * c_prev * g.y * (1.0 - g.y),
            dc * g.x * cell_act_grad(g.z, p.act),
            dh * tc * g.w * (1.0 - g.w),
        ));
        carries[at_dc_carry(state)] = dc * g.y;
    }
}
