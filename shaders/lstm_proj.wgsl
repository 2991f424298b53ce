// The hidden projection of one LSTMP time step, both directions at once: after the
// step kernel has written m_t = o ⊙ tanh(c_t) (H wide),
//
//   h_t = m_t · W_hrᵀ        [B, P] = [B, H] · [H, P]
//
// into the h double buffer (where the next step's kernel reads h_{t-1}) and
// into the layer output y, with inter-layer dropout when training. A padded
// step (t >= lengths[b]) carries h_{t-1} and writes 0 output, as the step
// kernel does without a hidden projection.
//
// Workgroup (WG, 1, 1): x = WG projected units p, y = RB batch rows,
// z = direction. m_t is staged through workgroup memory WG units at a time.
// W_hr keeps PyTorch's [P, H] layout per direction; `store_t` (f32 or f16,
// declared before this file) is its storage type; arithmetic is f32. WG and
// RB are declared there too, from `STEP_UNITS` and `STEP_ROWS` in
// src/gpu/kernels/mod.rs.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> m: array<f32>;             // [T, B, D·H]: o ⊙ tanh(c_t)
@group(0) @binding(2) var<storage, read> w_hr: array<store_t>;      // [D, P, H]
@group(0) @binding(3) var<storage, read_write> h_state: array<f32>; // [2, L·D, B, P]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;       // [T, B, D·P]
@group(0) @binding(5) var<storage, read> lengths: array<u32>;       // [B]

var<workgroup> m_tile: array<f32, RB * WG>;   // [RB][WG]: m_t[b0 + r][j0 + jj]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wg.z;
    let k = wg.x * WG + lid.x;   // projected unit
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let np = p.h_out;
    var t = p.step;
    if (d == 1u) {
        t = p.seq_len - 1u - p.step;
    }

    var acc: array<f32, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = 0.0;
    }
    for (var j0 = 0u; j0 < hid; j0 += WG) {
        for (var r = 0u; r < RB; r++) {
            let b = b0 + r;
            let j = j0 + lid.x;
            var v = 0.0;
            if (b < p.batch && j < hid) {
                v = m[(t * p.batch + b) * p.dirs * hid + d * hid + j];
            }
            m_tile[r * WG + lid.x] = v;
        }
        workgroupBarrier();
        if (k < np) {
            let jn = min(WG, hid - j0);
            let row = (d * np + k) * hid + j0;
            for (var jj = 0u; jj < jn; jj++) {
                let w = f32(w_hr[row + jj]);
                for (var r = 0u; r < RB; r++) {
                    acc[r] = fma(w, m_tile[r * WG + jj], acc[r]);
                }
            }
        }
        workgroupBarrier();
    }
    if (k >= np) {
        return;
    }

    let slot = p.slot + d;
    let h_prev = (p.parity * p.slots + slot) * p.batch * np;
    let h_next = ((1u - p.parity) * p.slots + slot) * p.batch * np;
    for (var r = 0u; r < RB; r++) {
        let b = b0 + r;
        if (b >= p.batch) {
            break;
        }
        let unit = d * np + k;
        let out = (t * p.batch + b) * p.dirs * np + unit;
        if (t < lengths[b]) {
            h_state[h_next + b * np + k] = acc[r];
            y[out] = acc[r] * dropout_scale(p.dropout, t, b, unit);
        } else {
            h_state[h_next + b * np + k] = h_state[h_prev + b * np + k];
            y[out] = 0.0;
        }
    }
}
