// One step of backpropagation through time for one layer, both directions,
// walking the steps in reverse visiting order (the forward direction from
// t = T-1 down to 0, the reverse direction from 0 up to T-1):
//
//   dh_t = dy_t ⊙ mask + dh_carry,   dh_carry = dG_{prev} · W_hh  (dG of the step handled just before)
//   dc_t = dh_t ⊙ o ⊙ (1 - tanh²(c_t)) + dc_carry
//   dG_t = (dc_t ⊙ g ⊙ i(1-i),  dc_t ⊙ c_{t-1} ⊙ f(1-f),  dc_t ⊙ i ⊙ (1-g²),  dh_t ⊙ tanh(c_t) ⊙ o(1-o))
//   dc_carry = dc_t ⊙ f
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
// Workgroup (WG, 1, 1): x = WG hidden units, y = RB batch rows, z = direction.
// The previous step's dG rows (or, with a hidden projection, dh_t) are staged
// through workgroup memory.
//
// `store_t` (f32 or f16, declared before this file by the kernel builder) is
// how the saved gates, W_hh and dG are stored; all arithmetic is f32.


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

var<workgroup> dg_tile: array<vec4<f32>, RB * WG>;   // [RB][WG]: dG_prev[b0 + r][unit u0 + uu]
var<workgroup> dh_tile: array<f32, RB * WG>;         // [RB][WG]: dh_t[b0 + r][k0 + kk]

fn projecting() -> bool {
    return p.h_out != p.hidden;
}


@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wg.z;
    let j = wg.x * WG + lid.x;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let bsz = p.batch;
    let has_prev = p.step > 0u;
    var t_prev = 0u;
    if (has_prev) {
        t_prev = time_of(p.step - 1u, d);
    }

    // rec[r] = (dG_prev · W_hh)[b0 + r, j]
    var rec: array<f32, RB>;
    if (has_prev && !projecting()) {
        rec = recurrent_dh(lid.x, d, j, b0, t_prev);
    }
    // With a hidden projection, dm[r] = (dh_t · W_hr)[b0 + r, j].
    var dm: array<f32, RB>;
    for (var r = 0u; r < RB; r++) {
        dm[r] = 0.0;
    }
    if (projecting() && p.step < p.seq_len) {
        let np = p.h_out;
        let t = time_of(p.step, d);
        for (var k0 = 0u; k0 < np; k0 += WG) {
            for (var r = 0u; r < RB; r++) {
                let b = b0 + r;
                let k = k0 + lid.x;
                var v = 0.0;
                if (b < bsz && k < np) {
                    v = dh_in[(t * bsz + b) * p.dirs * np + d * np + k];
                }
                dh_tile[r * WG + lid.x] = v;
            }
            workgroupBarrier();
            if (j < hid) {
                let kn = min(WG, np - k0);
                for (var kk = 0u; kk < kn; kk++) {
                    let w = f32(w_hr[(d * np + k0 + kk) * hid + j]);
                    for (var r = 0u; r < RB; r++) {
                        dm[r] = fma(w, dh_tile[r * WG + kk], dm[r]);
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (j >= hid) {
        return;
    }

    for (var r = 0u; r < RB; r++) {
        let b = b0 + r;
        if (b >= bsz) {
            break;
        }
        let len = lengths[b];
        let state = ((p.slot + d) * bsz + b) * hid + j;
        // Without a hidden projection h and c have the same shape, and this kernel
        // carries dh too.
        var carry = 0.0;
        if (!projecting()) {
            carry = carries[at_dh_carry(p.parity, state)];
            if (has_prev && t_prev < len) {
                carry = rec[r];
            }
            if (p.step == p.seq_len) {
                carries[at_d_h0(state)] = carry;
            } else {
                carries[at_dh_carry(1u - p.parity, state)] = carry;
            }
        }
        if (p.step == p.seq_len) {
            carries[at_d_c0(state)] = carries[at_dc_carry(state)];
            continue;
        }
        let t = time_of(p.step, d);
        let at = ((t * bsz + b) * p.dirs + d) * hid + j;
        if (t >= len) {
            d_gates[at] = vec4<store_t>(0.0);
            continue;
        }
        var dh = dm[r];
        if (!projecting()) {
            let unit = d * hid + j;
            dh = dh_in[(t * bsz + b) * p.dirs * hid + unit] * dropout_scale(p.dropout, t, b, unit) + carry;
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
        let tc = tanh_safe(c_t);
        let dc = dh * g.w * (1.0 - tc * tc) + carries[at_dc_carry(state)];
        d_gates[at] = vec4<store_t>(vec4<f32>(
            dc * g.z * g.x * (1.0 - g.x),
            dc * c_prev * g.y * (1.0 - g.y),
            dc * g.x * (1.0 - g.z * g.z),
            dh * tc * g.w * (1.0 - g.w),
        ));
        carries[at_dc_carry(state)] = dc * g.y;
    }
}
