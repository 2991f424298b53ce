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
// The same plan as the step kernel (shaders/lstm_step.wgsl), with one row
// per unit: a workgroup of WGS = KL · UPW invocations owns UPW projected
// units k and RB batch rows; the KL lanes of a unit split its reduction over
// H, reading consecutive elements of its W_hr row (PyTorch's [P, H] layout
// per direction keeps rows contiguous) and of m_t; the partial sums meet in
// a tree reduction in workgroup memory, RC rows at a time, and lane r < RB
// of each unit writes row b0 + r. Workgroups: (ceil(P / UPW), ceil(B / RB), D).
// `store_t` (f32 or f16) is W_hr's storage type; arithmetic is f32. It and
// the tile are declared before this file by the kernel builder.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> m: array<f32>;             // [T, B, D·H]: o ⊙ tanh(c_t)
@group(0) @binding(2) var<storage, read> w_hr: array<store_t>;      // [D, P, H]
@group(0) @binding(3) var<storage, read_write> h_state: array<f32>; // [2, L·D, B, P] (the head of `state`)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;       // [T, B, D·P]
@group(0) @binding(5) var<storage, read> lengths: array<u32>;       // [B]

var<workgroup> red: array<f32, RC * WGS>;   // [RC][WGS]: partial sums of RC rows

@compute @workgroup_size(WGS, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = wg.z;
    let unit_in_group = lid.x / KL;
    let lane = lid.x % KL;
    let k = wg.x * UPW + unit_in_group;   // projected unit
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
    if (k < np) {
        let row = (d * np + k) * hid;
        let last = p.batch - 1u;
        for (var j = lane; j < hid; j += KL) {
            let w = f32(w_hr[row + j]);
            for (var r = 0u; r < RB; r++) {
                let b = min(b0 + r, last);
                acc[r] = fma(w, m[(t * p.batch + b) * p.dirs * hid + d * hid + j], acc[r]);
            }
        }
    }
    var total = 0.0;
    for (var c = 0u; c < RB; c += RC) {
        for (var rr = 0u; rr < RC; rr++) {
            red[rr * WGS + lid.x] = acc[c + rr];
        }
        workgroupBarrier();
        for (var stride = KL / 2u; stride > 0u; stride /= 2u) {
            if (lane < stride) {
                for (var rr = 0u; rr < RC; rr++) {
                    red[rr * WGS + lid.x] += red[rr * WGS + lid.x + stride];
                }
            }
            workgroupBarrier();
        }
        if (lane >= c && lane < c + RC) {
            total = red[(lane - c) * WGS + unit_in_group * KL];
        }
        workgroupBarrier();
    }
    let b = b0 + lane;
    if (k >= np || lane >= RB || b >= p.batch) {
        return;
    }

    let slot = p.slot + d;
    let h_prev = (p.parity * p.slots + slot) * p.batch * np;
    let h_next = ((1u - p.parity) * p.slots + slot) * p.batch * np;
    let unit = d * np + k;
    let out = (t * p.batch + b) * p.dirs * np + unit;
    if (t < lengths[b]) {
        h_state[h_next + b * np + k] = total;
        y[out] = total * dropout_scale(p.dropout, t, b, unit);
    } else {
        h_state[h_next + b * np + k] = h_state[h_prev + b * np + k];
        y[out] = 0.0;
    }
}
