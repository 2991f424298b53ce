// One wavefront step of a unidirectional LSTM stack: dispatch s runs layer
// l's time step t = s - l for every layer l with 0 <= t < T, so a stack of L
// layers takes T + L - 1 step dispatches instead of L·T, and layer l + 1
// starts as soon as layer l has its first output.
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
// Two entry points: `main` for inference, and `main_train`, which also saves
// what the backward pass needs (every layer's in one buffer each, [L, T, B,
// H]) and applies inter-layer dropout to the inner layers' outputs (the next
// layer reads them dropped out, as PyTorch's does).
//
// The plan is the step kernel's (KL lanes per unit split each reduction,
// UPW units and RB batch rows per workgroup, the tree reduction of
// step_reduce.wgsl); the grid adds z = layer. Every layer's W_ih (layers >= 1),
// W_hh and bias pair sit in one buffer, rows by unit with inputs contiguous,
// in blocks of `block` elements (StepParams.slot holds it): W_ih at 0,
// W_hh at 4H·H, b_ih then b_hh at 8H·H. `wvec_t`, `wdot`, `load_h`,
// `load_x` (from `outputs`) and `w_elem` (one element of `weights`) are
// declared before this file for the tile's VEC.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<store_t>>; // [T, B, H]: layer 0's G
@group(0) @binding(2) var<storage, read> weights: array<wvec_t>;       // L blocks, see above
@group(0) @binding(3) var<storage, read_write> state: array<f32>;      // h [2, L, B, H], then c [L, B, H]
@group(0) @binding(4) var<storage, read_write> outputs: array<f32>;    // [L, T, B, H]: every layer's output
@group(0) @binding(5) var<storage, read> lengths: array<u32>;          // [B]
// Training only, every layer's in one buffer:
@group(0) @binding(6) var<storage, read_write> gates_saved: array<vec4<store_t>>; // [L, T, B, H]: i, f, g, o
@group(0) @binding(7) var<storage, read_write> c_saved: array<f32>;               // [L, T, B, H]: c after step t
@group(0) @binding(8) var<storage, read_write> h_prev_saved: array<store_t>;     // [L, T, B, H]: h entering step t

// Where c element `i` ([L, B, H]) sits in `state`, after h's two halves.
fn c_at(i: u32) -> u32 {
    return 2u * p.slots * p.batch * p.hidden + i;
}

// Σ_k W[row(4j + q), k] · v[b, k] over the KL-strided k of this lane, for
// the four gate rows of unit j from element `w0` and rows b0.. of a [B, H]
// vector at element `v0` of `src` (0: state, 1: outputs).
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

// True when layer `layer` has a step in this dispatch. Uniform across a
// workgroup, so a layer outside the wave leaves before any barrier.
fn in_wave(layer: u32) -> bool {
    return p.step >= layer && p.step - layer < p.seq_len;
}

// One invocation's share of a wavefront step: its layer, time step, unit
// and (after the reduction) batch row, the pre-activations of that row's
// four gates, and where h_{t-1} and h_t sit in `state`.
struct Wave {
    layer: u32,
    t: u32,
    j: u32,
    b: u32,
    updates: bool,   // this invocation does the cell update of row b
    pre: vec4<f32>,
    h_prev: u32,
    h_next: u32,
}

// The products and bias of every invocation's unit; called by every
// invocation of a workgroup whose layer is in the wave (it holds barriers).
fn wave_step(wg: vec3<u32>, lid: vec3<u32>) -> Wave {
    var w: Wave;
    w.layer = wg.z;
    w.t = p.step - w.layer;
    let lane = lid.x % KL;
    let unit = lid.x / KL;
    w.j = wg.x * UPW + unit;
    let b0 = wg.y * RB;
    let hid = p.hidden;
    let bsz = p.batch;
    let parity = w.t % 2u;
    w.h_prev = (parity * p.slots + w.layer) * bsz * hid;
    w.h_next = ((1u - parity) * p.slots + w.layer) * bsz * hid;
    let block = w.layer * p.slot;

    var acc: array<vec4<f32>, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    if (w.j < hid) {
        product(&acc, block + (4u * hid + 4u * w.j) * hid, 0u, w.h_prev, lane, b0);
        if (w.layer > 0u) {
            let x0 = ((w.layer - 1u) * p.seq_len + w.t) * bsz * hid;
            product(&acc, block + 4u * w.j * hid, 1u, x0, lane, b0);
        }
    }
    w.pre = reduce_lanes(&acc, lane, unit, lid.x);
    w.b = b0 + lane;
    w.updates = w.j < hid && lane < RB && w.b < bsz;
    if (!w.updates) {
        return w;
    }
    if (w.layer == 0u) {
        w.pre += vec4<f32>(gates_x[(w.t * bsz + w.b) * hid + w.j]);
    } else {
        let bias = block + 8u * hid * hid + 4u * w.j;
        let pair = 4u * hid;
        for (var q = 0u; q < 4u; q++) {
            w.pre[q] += w_elem(bias + q) + w_elem(bias + pair + q);
        }
    }
    return w;
}

// Element (t, b, j) of layer `layer` in an [L, T, B, H] buffer.
fn layer_at(w: Wave) -> u32 {
    return ((w.layer * p.seq_len + w.t) * p.batch + w.b) * p.hidden + w.j;
}

// The result of one cell update.
struct Cell {
    gates: vec4<f32>,   // activated i, f, g, o
    c: f32,
    h: f32,
}

// The cell update of both entry points at a valid step: the gates from the
// pre-activations, c_t = f ⊙ c_{t-1} + i ⊙ g (in place) and h_t = o ⊙ tanh(c_t),
// written to this layer's h_t.
fn update_cell(w: Wave) -> Cell {
    let ci = c_at((w.layer * p.batch + w.b) * p.hidden + w.j);
    let pre = w.pre;
    var cell: Cell;
    cell.gates = vec4<f32>(sigmoid(pre.x), sigmoid(pre.y), cell_act(pre.z, p.act), sigmoid(pre.w));
    cell.c = cell.gates.y * state[ci] + cell.gates.x * cell.gates.z;
    cell.h = cell.gates.w * cell_act(cell.c, p.act);
    state[ci] = cell.c;
    state[w.h_next + w.b * p.hidden + w.j] = cell.h;
    return cell;
}

@compute @workgroup_size(WGS, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (!in_wave(wg.z)) {
        return;
    }
    let w = wave_step(wg, lid);
    if (!w.updates) {
        return;
    }
    let hid = p.hidden;
    var out = 0.0;
    var c_out = 0.0;
    if (p.cell == 1u) {
        // A GRU: h only, from the four pre-activation slots.
        var h = state[w.h_prev + w.b * hid + w.j];
        if (w.t < lengths[w.b]) {
            h = gru_cell(w.pre, h);
            out = h;
        }
        state[w.h_next + w.b * hid + w.j] = h;
        outputs[layer_at(w)] = out;
        return;
    }
    if (w.t < lengths[w.b]) {
        let cell = update_cell(w);
        out = cell.h;
        c_out = cell.c;
    } else {
        state[w.h_next + w.b * hid + w.j] = state[w.h_prev + w.b * hid + w.j];
    }
    outputs[layer_at(w)] = out;
    // The last layer's per-step cell states, when asked for (D = 1).
    if (p.cells != 0u && w.layer + 1u == p.slots) {
        state[p.cells + (w.t * p.batch + w.b) * hid + w.j] = c_out;
    }
}

@compute @workgroup_size(WGS, 1, 1)
fn main_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (!in_wave(wg.z)) {
        return;
    }
    let w = wave_step(wg, lid);
    if (!w.updates) {
        return;
    }
    let hid = p.hidden;
    let ci = (w.layer * p.batch + w.b) * hid + w.j;
    let at = layer_at(w);
    let h_old = state[w.h_prev + w.b * hid + w.j];
    h_prev_saved[at] = store_t(h_old);
    if (p.cell == 1u) {
        // A GRU, as the layer-by-layer step kernel's `main_train`.
        c_saved[at] = h_old;
        if (w.t < lengths[w.b]) {
            let g = gru_gates(w.pre);
            let h = (1.0 - g.y) * g.z + g.y * h_old;
            gates_saved[at] = vec4<store_t>(g);
            state[w.h_next + w.b * hid + w.j] = h;
            var dr = p.dropout;
            dr.layer = w.layer;
            if (w.layer + 1u == p.slots) {
                dr.enabled = 0u;
            }
            outputs[at] = h * dropout_scale(dr, w.t, w.b, w.j);
        } else {
            gates_saved[at] = vec4<store_t>(0.0);
            state[w.h_next + w.b * hid + w.j] = h_old;
            outputs[at] = 0.0;
        }
        return;
    }
    if (w.t < lengths[w.b]) {
        let cell = update_cell(w);
        gates_saved[at] = vec4<store_t>(cell.gates);
        c_saved[at] = cell.c;
        // Dropout on every layer's output but the last: the mask of layer
        // `layer`, as the layer-by-layer step kernel draws it.
        var dr = p.dropout;
        dr.layer = w.layer;
        if (w.layer + 1u == p.slots) {
            dr.enabled = 0u;
        }
        outputs[at] = cell.h * dropout_scale(dr, w.t, w.b, w.j);
    } else {
        gates_saved[at] = vec4<store_t>(0.0);
        c_saved[at] = state[c_at(ci)];
        state[w.h_next + w.b * hid + w.j] = h_old;
        outputs[at] = 0.0;
    }
}
