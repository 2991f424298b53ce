// One wavefront step of a unidirectional LSTM stack (inference): dispatch s
// runs layer l's time step t = s - l for every layer l with 0 <= t < T, so a
// stack of L layers takes T + L - 1 step dispatches instead of L·T, and
// layer l + 1 starts as soon as layer l has its first output.
//
//   layer 0:   pre = G[t] + h_{t-1} · W_hhᵀ           (G = X·W_ihᵀ + b_ih + b_hh, from the GEMM)
//   layer l:   pre = x_t · W_ih^lᵀ + h_{t-1} · W_hh^lᵀ + b_ih^l + b_hh^l
//              with x_t = layer l - 1's output at t, written by dispatch s - 1
//
// then the cell update of shaders/lstm_step.wgsl. Each layer reads only its
// own h (double-buffered by its own step's parity) and the previous layer's
// output from the previous dispatch, so the layers of one dispatch never
// touch each other's data.
//
// The plan is the step kernel's (KL lanes per unit split each reduction,
// UPW units and RB batch rows per workgroup, the tree reduction of
// step_reduce.wgsl); the grid adds z = layer. Every layer's W_ih (layers >= 1),
// W_hh and bias pair sit in one buffer, rows by unit with inputs contiguous,
// in blocks of `block` elements (StepParams.slot holds it): W_ih at 0,
// W_hh at 4H·H, b_ih then b_hh at 8H·H. `wvec_t`, `wdot`, `load_h`,
// `load_x` and `w_elem` (one element of `weights`) are declared before this
// file for the tile's VEC.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<store_t>>; // [T, B, H]: layer 0's G
@group(0) @binding(2) var<storage, read> weights: array<wvec_t>;       // L blocks, see above
@group(0) @binding(3) var<storage, read_write> state: array<f32>;      // h [2, L, B, H], then c [L, B, H]
@group(0) @binding(4) var<storage, read_write> inner: array<f32>;      // [L - 1, T, B, H]: inner layers' outputs
@group(0) @binding(5) var<storage, read_write> y: array<f32>;          // [T, B, H]: the last layer's output
@group(0) @binding(6) var<storage, read> lengths: array<u32>;          // [B]

// Where c element `i` ([L, B, H]) sits in `state`, after h's two halves.
fn c_at(i: u32) -> u32 {
    return 2u * p.slots * p.batch * p.hidden + i;
}

// Σ_k W[row(4j + q), k] · v[b, k] over the KL-strided k of this lane, for
// the four gate rows of unit j from element `w0` and rows b0.. of a [B, H]
// vector at element `v0` of `src` (0: state, 1: inner).
fn product(acc: ptr<function, array<vec4<f32>, RB>>, w0: u32, src: u32, v0: u32, lane: u32, b0: u32) {
    let n = p.hidden;
    let nv = n / VEC;
    let row = w0 / VEC;
    let last = p.batch - 1u;
    for (var kv = lane; kv < nv; kv += KL) {
        let a = weights[row + kv];
        let b = weights[row + nv + kv];
        let c = weights[row + 2u * nv + kv];
        let d = weights[row + 3u * nv + kv];
        for (var r = 0u; r < RB; r++) {
            let at = v0 + min(b0 + r, last) * n + kv * VEC;
            var v: vec4<f32>;
            if (src == 0u) {
                v = load_h(at);
            } else {
                v = load_x(at);
            }
            (*acc)[r] += vec4<f32>(wdot(a, v), wdot(b, v), wdot(c, v), wdot(d, v));
        }
    }
}

@compute @workgroup_size(WGS, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let layer = wg.z;
    // Layers outside the wave this dispatch: the whole workgroup leaves.
    if (p.step < layer || p.step - layer >= p.seq_len) {
        return;
    }
    let t = p.step - layer;
    let lane = lid.x % KL;
    let unit = lid.x / KL;
    let j = wg.x * UPW + unit;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let bsz = p.batch;
    let parity = t % 2u;
    let h_prev = (parity * p.slots + layer) * bsz * hid;
    let h_next = ((1u - parity) * p.slots + layer) * bsz * hid;
    let block = layer * p.slot;

    var acc: array<vec4<f32>, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    if (j < hid) {
        product(&acc, block + (4u * hid + 4u * j) * hid, 0u, h_prev, lane, b0);
        if (layer > 0u) {
            let x0 = ((layer - 1u) * p.seq_len + t) * bsz * hid;
            product(&acc, block + 4u * j * hid, 1u, x0, lane, b0);
        }
    }
    let rec = reduce_lanes(&acc, lane, unit, lid.x);
    let b = b0 + lane;
    if (j >= hid || lane >= RB || b >= bsz) {
        return;
    }

    var pre = rec;
    if (layer == 0u) {
        pre += vec4<f32>(gates_x[(t * bsz + b) * hid + j]);
    } else {
        let bias = block + 8u * hid * hid + 4u * j;
        let pair = 4u * hid;
        for (var q = 0u; q < 4u; q++) {
            pre[q] += w_elem(bias + q) + w_elem(bias + pair + q);
        }
    }
    let ci = (layer * bsz + b) * hid + j;
    var out = 0.0;
    if (t < lengths[b]) {
        let g = vec4<f32>(sigmoid(pre.x), sigmoid(pre.y), tanh_safe(pre.z), sigmoid(pre.w));
        let c = g.y * state[c_at(ci)] + g.x * g.z;
        out = g.w * tanh_safe(c);
        state[c_at(ci)] = c;
        state[h_next + b * hid + j] = out;
    } else {
        state[h_next + b * hid + j] = state[h_prev + b * hid + j];
    }
    let at = (t * bsz + b) * hid + j;
    if (layer + 1u == p.slots) {
        y[at] = out;
    } else {
        inner[layer * p.seq_len * bsz * hid + at] = out;
    }
}
