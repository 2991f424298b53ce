// One time step of one LSTM layer, both directions at once, fused:
//
//   pre   = G[t] + b_hh + h_{t-1} · W_hhᵀ       (all four gates of a unit)
//   i, f, g, o = σ(pre.x), σ(pre.y), tanh(pre.z), σ(pre.w)
//   c_t   = f ⊙ c_{t-1} + i ⊙ g
//   h_t   = o ⊙ tanh(c_t)
//
// Gate rows are stored by unit (i_j, f_j, g_j, o_j side by side), so the four
// gates of unit j are one vec4 and the cell update happens in registers.
//
// Workgroup (64, 1, 1): x = 64 hidden units, y = a block of RB batch rows,
// z = direction. h_{t-1} is staged through workgroup memory 64 inputs at a
// time. h is double-buffered by step parity (every workgroup reads all of
// h_{t-1} while others write h_t); c is updated in place by its owner.
//
// Padded steps (t >= lengths[b]) carry h and c unchanged and write 0 output,
// which gives pack_padded_sequence semantics in both directions.

struct StepParams {
    step: u32,        // s in 0..T: t = s forward, T-1-s reverse
    parity: u32,      // h_{t-1} is in h_state[parity], h_t goes to [1 - parity]
    seq_len: u32,     // T
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    slot: u32,        // layer · D: this layer's first state slot
    slots: u32,       // L · D
}

const WG: u32 = 64u;
const RB: u32 = 4u;

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<f32>>;   // [T, B, D, H]: X·W_ihᵀ + b_ih
@group(0) @binding(2) var<storage, read> w_hh: array<vec4<f32>>;      // [D, H (input k), H (unit j)]
@group(0) @binding(3) var<storage, read> b_hh: array<vec4<f32>>;      // [D, H]
@group(0) @binding(4) var<storage, read_write> h_state: array<f32>;   // [2, L·D, B, H]
@group(0) @binding(5) var<storage, read_write> c_state: array<f32>;   // [L·D, B, H]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;         // [T, B, D·H]
@group(0) @binding(7) var<storage, read> lengths: array<u32>;         // [B]

var<workgroup> h_tile: array<f32, 256>;    // [RB][WG]: h_{t-1}[b0 + r][k0 + kk]

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wg.z;
    let j = wg.x * WG + lid.x;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let bsz = p.batch;
    var t = p.step;
    if (d == 1u) {
        t = p.seq_len - 1u - p.step;
    }
    let slot = p.slot + d;
    let h_prev = (p.parity * p.slots + slot) * bsz * hid;
    let h_next = ((1u - p.parity) * p.slots + slot) * bsz * hid;

    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < hid; k0 += WG) {
        for (var r = 0u; r < RB; r++) {
            let b = b0 + r;
            let k = k0 + lid.x;
            var v = 0.0;
            if (b < bsz && k < hid) {
                v = h_state[h_prev + b * hid + k];
            }
            h_tile[r * WG + lid.x] = v;
        }
        workgroupBarrier();
        if (j < hid) {
            let kn = min(WG, hid - k0);
            for (var kk = 0u; kk < kn; kk++) {
                let w = w_hh[(d * hid + k0 + kk) * hid + j];
                for (var r = 0u; r < RB; r++) {
                    acc[r] = fma(w, vec4<f32>(h_tile[r * WG + kk]), acc[r]);
                }
            }
        }
        workgroupBarrier();
    }
    if (j >= hid) {
        return;
    }

    let bias = b_hh[d * hid + j];
    for (var r = 0u; r < RB; r++) {
        let b = b0 + r;
        if (b >= bsz) {
            break;
        }
        let s = (slot * bsz + b) * hid + j;
        let out = (t * bsz + b) * p.dirs * hid + d * hid + j;
        if (t < lengths[b]) {
            let pre = acc[r] + gates_x[((t * bsz + b) * p.dirs + d) * hid + j] + bias;
            let i_g = sigmoid(pre.x);
            let f_g = sigmoid(pre.y);
            let g_g = tanh_safe(pre.z);
            let o_g = sigmoid(pre.w);
            let c = f_g * c_state[s] + i_g * g_g;
            let h = o_g * tanh_safe(c);
            c_state[s] = c;
            h_state[h_next + b * hid + j] = h;
            y[out] = h;
        } else {
            h_state[h_next + b * hid + j] = h_state[h_prev + b * hid + j];
            y[out] = 0.0;
        }
    }
}
