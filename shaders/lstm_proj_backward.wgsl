// The first half of one LSTMP backward step, both directions: the gradient
// of the P-wide h_t, which the cell half (shaders/lstm_step_backward.wgsl)
// then maps back through the hidden projection, dm_t = dh_t · W_hr.
//
//   dh_t = dy_t ⊙ mask + dh_carry,   dh_carry = dG_{prev} · W_hh  (P wide)
//
// dh_t is stored per step for the cell half and for dW_hr = dhᵀ · M after
// the loop (0 at padded steps). A padded step (t >= lengths[b]) passes
// dh_carry through unchanged; the dispatch with step == T only finishes
// dh_0 (the recurrent product of the last dG).
//
// Workgroup (WG, 1, 1): x = WG projected units k, y = RB batch rows,
// z = direction. The previous step's dG rows are staged through workgroup
// memory. `store_t` is how dG and W_hh are stored; arithmetic is f32.


@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> d_gates: array<vec4<store_t>>; // [T, B, D, H]
@group(0) @binding(2) var<storage, read> w_hh: array<store_t>;    // [D·4H, P]: rows by unit (4u + q), inputs k contiguous
@group(0) @binding(3) var<storage, read> dy: array<f32>;                // [T, B, D·P]
@group(0) @binding(4) var<storage, read> lengths: array<u32>;           // [B]
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;          // [T, B, D·P]: dh_t
@group(0) @binding(6) var<storage, read_write> carries: array<f32>;     // see backward_common.wgsl

var<workgroup> dg_tile: array<vec4<f32>, RB * WG>;   // [RB][WG]: dG_prev[b0 + r][unit u0 + uu]


// (dG_{t_prev} · W_hh)[b0 + r, col] for r < RB: the sum over all 4H gate
// rows of dG[b, u, q] · W_hh[q·H + u, col], reading W_hh in its rows-by-unit
// layout [D·4H, H_out] (row 4u + q), where the lanes (one per column col)
// read consecutive elements of each row. Columns at or past H_out get 0. Called by every
// invocation of the workgroup in uniform control flow (it holds barriers).
fn recurrent_dh(lane: u32, d: u32, col: u32, b0: u32, t_prev: u32) -> array<f32, RB> {
    let hid = p.hidden;
    let width = p.h_out;
    let bsz = p.batch;
    var rec: array<f32, RB>;
    for (var r = 0u; r < RB; r++) {
        rec[r] = 0.0;
    }
    for (var u0 = 0u; u0 < hid; u0 += WG) {
        for (var r = 0u; r < RB; r++) {
            let b = b0 + r;
            let u = u0 + lane;
            var v = vec4<f32>(0.0);
            if (b < bsz && u < hid) {
                v = vec4<f32>(d_gates[((t_prev * bsz + b) * p.dirs + d) * hid + u]);
            }
            dg_tile[r * WG + lane] = v;
        }
        workgroupBarrier();
        if (col < width) {
            let un = min(WG, hid - u0);
            for (var uu = 0u; uu < un; uu++) {
                let row = (d * hid + u0 + uu) * 4u * width + col;
                let w = vec4<f32>(
                    f32(w_hh[row]),
                    f32(w_hh[row + width]),
                    f32(w_hh[row + 2u * width]),
                    f32(w_hh[row + 3u * width]),
                );
                for (var r = 0u; r < RB; r++) {
                    rec[r] += dot(w, dg_tile[r * WG + uu]);
                }
            }
        }
        workgroupBarrier();
    }
    return rec;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wg.z;
    let k = wg.x * WG + lid.x;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let np = p.h_out;
    let bsz = p.batch;
    let has_prev = p.step > 0u;
    var t_prev = 0u;
    if (has_prev) {
        t_prev = time_of(p.step - 1u, d);
    }

    // rec[r] = (dG_prev · W_hh)[b0 + r, k]
    var rec: array<f32, RB>;
    if (has_prev) {
        rec = recurrent_dh(lid.x, d, k, b0, t_prev);
    }
    if (k >= np) {
        return;
    }

    for (var r = 0u; r < RB; r++) {
        let b = b0 + r;
        if (b >= bsz) {
            break;
        }
        let len = lengths[b];
        let state = ((p.slot + d) * bsz + b) * np + k;
        var carry = carries[at_dh_carry(p.parity, state)];
        if (has_prev && t_prev < len) {
            carry = rec[r];
        }
        if (p.step == p.seq_len) {
            carries[at_d_h0(state)] = carry;
            continue;
        }
        let t = time_of(p.step, d);
        let unit = d * np + k;
        let at = (t * bsz + b) * p.dirs * np + unit;
        carries[at_dh_carry(1u - p.parity, state)] = carry;
        if (t >= len) {
            dh[at] = 0.0;
            continue;
        }
        dh[at] = dy[at] * dropout_scale(p.dropout, t, b, unit) + carry;
    }
}
