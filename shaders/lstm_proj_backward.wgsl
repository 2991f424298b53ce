// The first half of one LSTMP backward step, both directions: the gradient
// of the P-wide h_t, which the cell half (shaders/lstm_step_backward.wgsl)
// then maps back through the projection, dm_t = dh_t · W_hr.
//
//   dh_t = dy_t ⊙ mask + dh_carry,   dh_carry = dG_{prev} · W_hh  (P wide)
//
// dh_t is stored per step for the cell half and for dW_hr = dhᵀ · M after
// the loop (0 at padded steps). A padded step (t >= lengths[b]) passes
// dh_carry through unchanged; the dispatch with step == T only finishes
// dh_0 (the recurrent product of the last dG).
//
// Workgroup (64, 1, 1): x = 64 projected units k, y = RB batch rows,
// z = direction. The previous step's dG rows are staged through workgroup
// memory. `store_t` is how dG and W_hh are stored; arithmetic is f32.

struct BackParams {
    step: u32,        // s in 0..=T
    parity: u32,      // dh_carry is read from [parity], written to [1 - parity]
    seq_len: u32,     // T
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    slot: u32,        // layer · D: this layer's first state slot
    slots: u32,       // L · D
    dropout: Dropout, // the mask the forward pass applied to this layer's output
    h_out: u32,       // P
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;
const RB: u32 = 4u;

@group(0) @binding(0) var<uniform> p: BackParams;
@group(0) @binding(1) var<storage, read> d_gates: array<vec4<store_t>>; // [T, B, D, H]
@group(0) @binding(2) var<storage, read> w_hh: array<vec4<store_t>>;    // [D, P (input k), H (unit u)]
@group(0) @binding(3) var<storage, read> dy: array<f32>;                // [T, B, D·P]
@group(0) @binding(4) var<storage, read> lengths: array<u32>;           // [B]
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;          // [T, B, D·P]: dh_t
@group(0) @binding(6) var<storage, read_write> dh_carry: array<f32>;    // [2, L·D, B, P]
@group(0) @binding(7) var<storage, read_write> d_h0: array<f32>;        // [L·D, B, P]

var<workgroup> dg_tile: array<vec4<f32>, 256>;   // [RB][WG]: dG_prev[b0 + r][unit u0 + uu]

// The time index handled at backward step s in direction d.
fn time_of(s: u32, d: u32) -> u32 {
    if (d == 0u) {
        return p.seq_len - 1u - s;
    }
    return s;
}

@compute @workgroup_size(64, 1, 1)
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

    // rec[r] = (dG_prev · W_hh)[b0 + r, k]: the sum over all 4H gate rows of
    // dG_prev[b, u, q] · W_hh[q·H + u, k], reading W as [k][u][q].
    var rec: array<f32, 4>;
    for (var r = 0u; r < RB; r++) {
        rec[r] = 0.0;
    }
    if (has_prev) {
        for (var u0 = 0u; u0 < hid; u0 += WG) {
            for (var r = 0u; r < RB; r++) {
                let b = b0 + r;
                let u = u0 + lid.x;
                var v = vec4<f32>(0.0);
                if (b < bsz && u < hid) {
                    v = vec4<f32>(d_gates[((t_prev * bsz + b) * p.dirs + d) * hid + u]);
                }
                dg_tile[r * WG + lid.x] = v;
            }
            workgroupBarrier();
            if (k < np) {
                let un = min(WG, hid - u0);
                for (var uu = 0u; uu < un; uu++) {
                    let w = vec4<f32>(w_hh[(d * np + k) * hid + u0 + uu]);
                    for (var r = 0u; r < RB; r++) {
                        rec[r] += dot(w, dg_tile[r * WG + uu]);
                    }
                }
            }
            workgroupBarrier();
        }
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
        let slab = p.slots * bsz * np;
        var carry = dh_carry[p.parity * slab + state];
        if (has_prev && t_prev < len) {
            carry = rec[r];
        }
        if (p.step == p.seq_len) {
            d_h0[state] = carry;
            continue;
        }
        let t = time_of(p.step, d);
        let unit = d * np + k;
        let at = (t * bsz + b) * p.dirs * np + unit;
        dh_carry[(1u - p.parity) * slab + state] = carry;
        if (t >= len) {
            dh[at] = 0.0;
            continue;
        }
        dh[at] = dy[at] * dropout_scale(p.dropout, t, b, unit) + carry;
    }
}
