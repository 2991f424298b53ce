// One time step of one LSTM layer, both directions at once, fused:
//
//   pre   = G[t] + h_{t-1} · W_hhᵀ       (all four gates of a unit;
//                                        G = X·W_ihᵀ + b_ih + b_hh, from the GEMM)
//   i, f, g, o = σ(pre.x), σ(pre.y), tanh(pre.z), σ(pre.w)
//   c_t   = f ⊙ c_{t-1} + i ⊙ g
//   h_t   = o ⊙ tanh(c_t)
//
// With a hidden projection (proj_size P > 0, so h_out = P < H), h_{t-1} is P wide
// and this kernel stops at m_t = o ⊙ tanh(c_t): it writes m_t into `y`
// (then [T, B, D·H], without dropout) and leaves h alone;
// shaders/lstm_proj.wgsl then computes h_t = m_t · W_hrᵀ in a second
// dispatch.
//
// The recurrent product is split along its reduction (K = h_out), as on a
// GPU it must be for a step to fill the machine: a workgroup of
// WGS = KL · UPW invocations owns UPW hidden units (all four gate rows of
// each) and RB batch rows. The KL lanes of a unit each sum every KL-th input
// k; W_hh is stored rows by unit with inputs contiguous ([D·4H, K], see
// src/gpu/layout.rs), so those lanes read consecutive elements of each row,
// and one workgroup reads its units' rows once for all RB batch rows. The
// lanes' partial sums meet in a tree reduction in workgroup memory, RC rows
// at a time; then lane r < RB of each unit does the cell update of batch row
// b0 + r. Workgroups: (ceil(H / UPW), ceil(B / RB), D).
//
// h is double-buffered by step parity (every workgroup reads all of h_{t-1}
// while others write h_t); c is updated in place by its owner.
//
// The cell activation (StepParams.act) is tanh or relu, for g and for c in
// h_t = o ⊙ act(c_t). With recurrent dropout (training), the product reads
// h_{t-1} ⊙ m_h, the mask [D, B, H_out] read from the lengths buffer at
// StepParams.rmask, and h_prev_saved keeps h_{t-1} ⊙ m_h for dW_hh; the
// state itself, the output and the padding carry stay unmasked.
//
// A layer-normalised LSTM (StepParams.ln != 0) stops after the product:
// it stores h̃_{t-1} · W_hhᵀ (and, training, h_prev_saved) and leaves the
// cell to shaders/ln_step.wgsl, the step's second dispatch.
//
// Padded steps (t >= lengths[b]) carry h and c unchanged and write 0 output,
// which gives pack_padded_sequence semantics in both directions.
//
// Two entry points: `main` for inference, and `main_train`, which also
// saves what the backward pass needs and applies inter-layer dropout to the
// layer's output.
//
// Declared before this file by the kernel builder, from `StepTile` in
// src/gpu/kernels/lstm_step.rs: `store_t` (f32 or f16: how weights, the
// input projection and the saved gates and h are stored; everything is
// widened to f32 on load, and c stays f32 throughout), and the tile KL, UPW,
// RB, RC, WGS = KL · UPW and VEC. They are consts, one pipeline per tile, so
// every loop over rows and lanes has a fixed trip count. VEC (4, 2 or 1, the
// largest that divides H_out) is how many W_hh elements a lane loads at
// once: `wvec_t`, `wdot` and `load_h` are declared before this file for it,
// so f16 weights load as vec4<f16> or vec2<f16> and accumulate in f32.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<store_t>>; // [T, B, D, H]: X·W_ihᵀ + b_ih + b_hh
@group(0) @binding(2) var<storage, read> w_hh: array<wvec_t>;          // [D·4H, H_out / VEC]: rows by unit (4j + q), k contiguous
@group(0) @binding(3) var<storage, read_write> state: array<f32>;     // h [2, L·D, B, H_out], then c [L·D, B, H]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;         // [T, B, D·H]: h, or m with a hidden projection
@group(0) @binding(5) var<storage, read> lengths: array<u32>;         // [B]
// Training only:
@group(0) @binding(6) var<storage, read_write> gates_saved: array<vec4<store_t>>; // [T, B, D, H]: i, f, g, o
@group(0) @binding(7) var<storage, read_write> c_saved: array<f32>;               // [T, B, D, H]: c after step t
@group(0) @binding(8) var<storage, read_write> h_prev_saved: array<store_t>;     // [T, B, D·H_out]: h entering step t


// Where one invocation works: unit j of direction d, and (after the
// reduction) batch row b0 + lane.
struct Site {
    d: u32,
    j: u32,
    unit: u32,      // j's place in the workgroup (0..UPW)
    lane: u32,      // the lane along K (0..KL)
    b0: u32,
    t: u32,
    slot: u32,
    h_prev: u32,   // offset of h_{t-1} for this direction in `state`
    h_next: u32,   // offset of h_t
}

// Where c element `i` ([L·D, B, H]) sits in `state`, after h's two halves.
fn c_at(i: u32) -> u32 {
    return 2u * p.slots * p.batch * p.h_out + i;
}

// True when h_t = m_t · W_hrᵀ is left to the hidden-projection kernel.
fn projecting() -> bool {
    return p.h_out != p.hidden;
}

fn site(wg: vec3<u32>, lid: vec3<u32>) -> Site {
    var s: Site;
    s.d = wg.z;
    s.unit = lid.x / KL;
    s.lane = lid.x % KL;
    s.j = wg.x * UPW + s.unit;
    s.b0 = wg.y * RB;
    s.t = p.step;
    if (s.d == 1u) {
        s.t = p.seq_len - 1u - p.step;
    }
    s.slot = p.slot + s.d;
    s.h_prev = (p.parity * p.slots + s.slot) * p.batch * p.h_out;
    s.h_next = ((1u - p.parity) * p.slots + s.slot) * p.batch * p.h_out;
    return s;
}

// VEC elements of the recurrent dropout mask from u32 index i of `lengths`
// (f32 bits; see StepParams.rmask).
fn rmask_at(i: u32) -> vec4<f32> {
    var m = vec4<f32>(0.0);
    for (var e = 0u; e < VEC; e++) {
        m[e] = bitcast<f32>(lengths[i + e]);
    }
    return m;
}

// (h̃_{t-1} · W_hhᵀ)[b0 + s.lane, four gates of unit s.j]: valid in lanes
// s.lane < RB, where h̃ = h ⊙ m_h with recurrent dropout (`masked`, training
// only) and h otherwise. Called by every invocation of the workgroup, in
// uniform control flow (it holds barriers).
fn recurrent(s: Site, lid: u32, masked: bool) -> vec4<f32> {
    let n_in = p.h_out;
    var acc: array<vec4<f32>, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    if (s.j < p.hidden) {
        // W_hh in units of VEC elements (VEC divides H_out).
        let nv = n_in / VEC;
        let row = (s.d * p.hidden + s.j) * 4u * nv;
        // Rows past the batch read the last row's h and are never stored.
        let last = p.batch - 1u;
        for (var kv = s.lane; kv < nv; kv += KL) {
            let w0 = w_hh[row + kv];
            let w1 = w_hh[row + nv + kv];
            let w2 = w_hh[row + 2u * nv + kv];
            let w3 = w_hh[row + 3u * nv + kv];
            for (var r = 0u; r < RB; r++) {
                let row = min(s.b0 + r, last);
                var h = load_h(s.h_prev + row * n_in + kv * VEC);
                if (masked) {
                    h *= rmask_at(p.rmask + (s.d * p.batch + row) * n_in + kv * VEC);
                }
                acc[r] += vec4<f32>(wdot(w0, h), wdot(w1, h), wdot(w2, h), wdot(w3, h));
            }
        }
    }
    return reduce_lanes(&acc, s.lane, s.unit, lid);
}

// The activated gates (i, f, g, o) from the pre-activation of row b.
fn activate(s: Site, b: u32, rec: vec4<f32>) -> vec4<f32> {
    let gx = vec4<f32>(gates_x[((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j]);
    let pre = rec + gx;
    return vec4<f32>(sigmoid(pre.x), sigmoid(pre.y), cell_act(pre.z, p.act), sigmoid(pre.w));
}

// One unit's cell update at a valid step of row b.
struct Cell {
    gates: vec4<f32>,   // activated i, f, g, o
    c: f32,             // c_t
    h: f32,             // h_t, or m_t with a hidden projection
}

// The cell update of both entry points: the gates from the recurrent
// product `rec`, c_t = f ⊙ c_{t-1} + i ⊙ g (written in place at c element `ci`)
// and h_t = o ⊙ tanh(c_t).
fn update_cell(s: Site, b: u32, ci: u32, rec: vec4<f32>) -> Cell {
    var cell: Cell;
    cell.gates = activate(s, b, rec);
    cell.c = cell.gates.y * state[c_at(ci)] + cell.gates.x * cell.gates.z;
    cell.h = cell.gates.w * cell_act(cell.c, p.act);
    state[c_at(ci)] = cell.c;
    return cell;
}

// A layer-normalised LSTM: the raw product of row b, into R [D, B, H, 4]
// in `state` at p.ln, for shaders/ln_step.wgsl to normalise and finish the
// step (a norm over the row's 4H gates spans every workgroup of this grid).
fn store_rec(s: Site, b: u32, rec: vec4<f32>) {
    let at = p.ln + ((s.d * p.batch + b) * p.hidden + s.j) * 4u;
    for (var q = 0u; q < 4u; q++) {
        state[at + q] = rec[q];
    }
}

// The batch row this invocation updates, or false when it updates none.
fn updates(s: Site) -> bool {
    return s.j < p.hidden && s.lane < RB && s.b0 + s.lane < p.batch;
}

@compute @workgroup_size(WGS, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = site(wg, lid);
    let rec = recurrent(s, lid.x, false);
    if (!updates(s)) {
        return;
    }
    let b = s.b0 + s.lane;
    if (p.ln != 0u) {
        store_rec(s, b, rec);
        return;
    }
    let ci = (s.slot * p.batch + b) * p.hidden + s.j;
    let out = (s.t * p.batch + b) * p.dirs * p.hidden + s.d * p.hidden + s.j;
    if (p.cell == 1u) {
        // A GRU: h only, from the four pre-activation slots.
        var h = state[s.h_prev + b * p.hidden + s.j];
        var y_t = 0.0;
        if (s.t < lengths[b]) {
            let gx = vec4<f32>(gates_x[((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j]);
            h = gru_cell(rec + gx, h);
            y_t = h;
        }
        state[s.h_next + b * p.hidden + s.j] = h;
        y[out] = y_t;
        return;
    }
    // c_t for the per-step cell states (0 at padded steps).
    var c_out = 0.0;
    if (s.t < lengths[b]) {
        let cell = update_cell(s, b, ci, rec);
        c_out = cell.c;
        // With a hidden projection, m_t into y; h is the hidden-projection kernel's.
        if (!projecting()) {
            state[s.h_next + b * p.hidden + s.j] = cell.h;
        }
        y[out] = cell.h;
    } else {
        if (!projecting()) {
            state[s.h_next + b * p.hidden + s.j] = state[s.h_prev + b * p.hidden + s.j];
        }
        y[out] = 0.0;
    }
    if (p.cells != 0u) {
        state[p.cells + ((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j] = c_out;
    }
}

@compute @workgroup_size(WGS, 1, 1)
fn main_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = site(wg, lid);
    let rec = recurrent(s, lid.x, p.rmask != 0u);
    if (!updates(s)) {
        return;
    }
    let b = s.b0 + s.lane;
    let ci = (s.slot * p.batch + b) * p.hidden + s.j;
    let unit = s.d * p.hidden + s.j;
    let out = (s.t * p.batch + b) * p.dirs * p.hidden + unit;
    let saved = ((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j;
    if (p.cell == 1u) {
        // A GRU: saves (r, z, n, W_hn h + b_hn), and h_{t-1} twice: for
        // dW_hh, and in c_saved (a GRU has no c) for its backward step.
        let h_old = state[s.h_prev + b * p.hidden + s.j];
        // For dW_hh, h_{t-1} as the product saw it (⊙ m_h with recurrent dropout).
        var h_seen = h_old;
        if (p.rmask != 0u) {
            h_seen *= bitcast<f32>(lengths[p.rmask + (s.d * p.batch + b) * p.h_out + s.j]);
        }
        h_prev_saved[out] = store_t(h_seen);
        c_saved[saved] = h_old;
        if (s.t < lengths[b]) {
            let gx = vec4<f32>(gates_x[saved]);
            let g = gru_gates(rec + gx);
            let h = (1.0 - g.y) * g.z + g.y * h_old;
            gates_saved[saved] = vec4<store_t>(g);
            state[s.h_next + b * p.hidden + s.j] = h;
            y[out] = h * dropout_scale(p.dropout, s.t, b, unit);
        } else {
            gates_saved[saved] = vec4<store_t>(0.0);
            state[s.h_next + b * p.hidden + s.j] = h_old;
            y[out] = 0.0;
        }
        return;
    }
    // h_{t-1} has h_out units: the units j < h_out save it, as the product
    // saw it (h ⊙ m_h with recurrent dropout), for dW_hh.
    var h_old = 0.0;
    if (s.j < p.h_out) {
        h_old = state[s.h_prev + b * p.h_out + s.j];
        var h_seen = h_old;
        if (p.rmask != 0u) {
            h_seen *= bitcast<f32>(lengths[p.rmask + (s.d * p.batch + b) * p.h_out + s.j]);
        }
        h_prev_saved[(s.t * p.batch + b) * p.dirs * p.h_out + s.d * p.h_out + s.j] = store_t(h_seen);
    }
    if (p.ln != 0u) {
        store_rec(s, b, rec);
        return;
    }
    if (s.t < lengths[b]) {
        let cell = update_cell(s, b, ci, rec);
        let h = cell.h;
        gates_saved[saved] = vec4<store_t>(cell.gates);
        c_saved[saved] = cell.c;
        if (projecting()) {
            // m_t, saved for dW_hr; the hidden-projection kernel applies dropout.
            y[out] = h;
        } else {
            state[s.h_next + b * p.hidden + s.j] = h;
            y[out] = h * dropout_scale(p.dropout, s.t, b, unit);
        }
    } else {
        gates_saved[saved] = vec4<store_t>(0.0);
        c_saved[saved] = state[c_at(ci)];
        if (!projecting()) {
            state[s.h_next + b * p.hidden + s.j] = h_old;
        }
        y[out] = 0.0;
    }
}
