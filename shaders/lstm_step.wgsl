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
// With a hidden projection (proj_size P > 0, so h_out = P < H), h_{t-1} is P wide
// and this kernel stops at m_t = o ⊙ tanh(c_t): it writes m_t into `y`
// (then [T, B, D·H], without dropout) and leaves h_state alone;
// shaders/lstm_proj.wgsl then computes h_t = m_t · W_hrᵀ in a second
// dispatch.
//
// Workgroup (WG, 1, 1): x = WG hidden units, y = a block of RB batch rows,
// z = direction. h_{t-1} is staged through workgroup memory WG inputs at a
// time. h is double-buffered by step parity (every workgroup reads all of
// h_{t-1} while others write h_t); c is updated in place by its owner.
//
// Padded steps (t >= lengths[b]) carry h and c unchanged and write 0 output,
// which gives pack_padded_sequence semantics in both directions.
//
// Two entry points: `main` for inference, and `main_train`, which also
// saves what the backward pass needs and applies inter-layer dropout to the
// layer's output.
//
// `store_t` (f32 or f16, declared before this file by the kernel builder) is
// how weights, the input projection and the saved gates and h are stored;
// everything is widened to f32 on load, and c stays f32 throughout. So are
// WG (units per workgroup) and RB (batch rows per workgroup), from the Rust
// constants `STEP_UNITS` and `STEP_ROWS` in src/gpu/kernels/mod.rs.

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read> gates_x: array<vec4<store_t>>; // [T, B, D, H]: X·W_ihᵀ + b_ih
@group(0) @binding(2) var<storage, read> w_hh: array<vec4<store_t>>;    // [D, H_out (input k), H (unit j)]
@group(0) @binding(3) var<storage, read> b_hh: array<vec4<store_t>>;    // [D, H]
@group(0) @binding(4) var<storage, read_write> h_state: array<f32>;   // [2, L·D, B, H_out]
@group(0) @binding(5) var<storage, read_write> c_state: array<f32>;   // [L·D, B, H]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;         // [T, B, D·H]: h, or m with a hidden projection
@group(0) @binding(7) var<storage, read> lengths: array<u32>;         // [B]
// Training only:
@group(0) @binding(8) var<storage, read_write> gates_saved: array<vec4<store_t>>; // [T, B, D, H]: i, f, g, o
@group(0) @binding(9) var<storage, read_write> c_saved: array<f32>;               // [T, B, D, H]: c after step t
@group(0) @binding(10) var<storage, read_write> h_prev_saved: array<store_t>;     // [T, B, D·H_out]: h entering step t

var<workgroup> h_tile: array<f32, RB * WG>;    // [RB][WG]: h_{t-1}[b0 + r][k0 + kk]

// Where one invocation works.
struct Site {
    d: u32,
    j: u32,
    b0: u32,
    t: u32,
    slot: u32,
    h_prev: u32,   // offset of h_{t-1} for this direction in h_state
    h_next: u32,   // offset of h_t
}

// True when h_t = m_t · W_hrᵀ is left to the hidden-projection kernel.
fn projecting() -> bool {
    return p.h_out != p.hidden;
}

fn site(wg: vec3<u32>, lid: vec3<u32>) -> Site {
    var s: Site;
    s.d = wg.z;
    s.j = wg.x * WG + lid.x;
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

// h_{t-1} · W_hhᵀ for the four gates of unit s.j and rows b0..b0+RB.
// Called by every invocation of the workgroup (it holds barriers).
fn recurrent(s: Site, lane: u32) -> array<vec4<f32>, RB> {
    let hid = p.hidden;
    let n_in = p.h_out;
    var acc: array<vec4<f32>, RB>;
    for (var r = 0u; r < RB; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < n_in; k0 += WG) {
        for (var r = 0u; r < RB; r++) {
            let b = s.b0 + r;
            let k = k0 + lane;
            var v = 0.0;
            if (b < p.batch && k < n_in) {
                v = h_state[s.h_prev + b * n_in + k];
            }
            h_tile[r * WG + lane] = v;
        }
        workgroupBarrier();
        if (s.j < hid) {
            let kn = min(WG, n_in - k0);
            for (var kk = 0u; kk < kn; kk++) {
                let w = vec4<f32>(w_hh[(s.d * n_in + k0 + kk) * hid + s.j]);
                for (var r = 0u; r < RB; r++) {
                    acc[r] = fma(w, vec4<f32>(h_tile[r * WG + kk]), acc[r]);
                }
            }
        }
        workgroupBarrier();
    }
    return acc;
}

// The activated gates (i, f, g, o) from the pre-activation of row b.
fn activate(s: Site, b: u32, rec: vec4<f32>) -> vec4<f32> {
    let gx = vec4<f32>(gates_x[((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j]);
    let pre = rec + gx + vec4<f32>(b_hh[s.d * p.hidden + s.j]);
    return vec4<f32>(sigmoid(pre.x), sigmoid(pre.y), tanh_safe(pre.z), sigmoid(pre.w));
}

// One unit's cell update at a valid step of row b.
struct Cell {
    gates: vec4<f32>,   // activated i, f, g, o
    c: f32,             // c_t
    h: f32,             // h_t, or m_t with a hidden projection
}

// The cell update of both entry points: the gates from the recurrent
// product `rec`, c_t = f ⊙ c_{t-1} + i ⊙ g (written in place at `state`)
// and h_t = o ⊙ tanh(c_t).
fn update_cell(s: Site, b: u32, state: u32, rec: vec4<f32>) -> Cell {
    var cell: Cell;
    cell.gates = activate(s, b, rec);
    cell.c = cell.gates.y * c_state[state] + cell.gates.x * cell.gates.z;
    cell.h = cell.gates.w * tanh_safe(cell.c);
    c_state[state] = cell.c;
    return cell;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = site(wg, lid);
    let acc = recurrent(s, lid.x);
    if (s.j >= p.hidden) {
        return;
    }
    for (var r = 0u; r < RB; r++) {
        let b = s.b0 + r;
        if (b >= p.batch) {
            break;
        }
        let state = (s.slot * p.batch + b) * p.hidden + s.j;
        let out = (s.t * p.batch + b) * p.dirs * p.hidden + s.d * p.hidden + s.j;
        if (projecting()) {
            // m_t into y; h is the hidden-projection kernel's.
            if (s.t < lengths[b]) {
                y[out] = update_cell(s, b, state, acc[r]).h;
            } else {
                y[out] = 0.0;
            }
            continue;
        }
        if (s.t < lengths[b]) {
            let h = update_cell(s, b, state, acc[r]).h;
            h_state[s.h_next + b * p.hidden + s.j] = h;
            y[out] = h;
        } else {
            h_state[s.h_next + b * p.hidden + s.j] = h_state[s.h_prev + b * p.hidden + s.j];
            y[out] = 0.0;
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = site(wg, lid);
    let acc = recurrent(s, lid.x);
    if (s.j >= p.hidden) {
        return;
    }
    for (var r = 0u; r < RB; r++) {
        let b = s.b0 + r;
        if (b >= p.batch) {
            break;
        }
        let state = (s.slot * p.batch + b) * p.hidden + s.j;
        let unit = s.d * p.hidden + s.j;
        let out = (s.t * p.batch + b) * p.dirs * p.hidden + unit;
        let saved = ((s.t * p.batch + b) * p.dirs + s.d) * p.hidden + s.j;
        // h_{t-1} has h_out units: the first h_out invocations save it.
        var h_old = 0.0;
        if (s.j < p.h_out) {
            h_old = h_state[s.h_prev + b * p.h_out + s.j];
            h_prev_saved[(s.t * p.batch + b) * p.dirs * p.h_out + s.d * p.h_out + s.j] = store_t(h_old);
        }
        if (s.t < lengths[b]) {
            let cell = update_cell(s, b, state, acc[r]);
            let h = cell.h;
            gates_saved[saved] = vec4<store_t>(cell.gates);
            c_saved[saved] = cell.c;
            if (projecting()) {
                // m_t, saved for dW_hr; the hidden-projection kernel applies dropout.
                y[out] = h;
            } else {
                h_state[s.h_next + b * p.hidden + s.j] = h;
                y[out] = h * dropout_scale(p.dropout, s.t, b, unit);
            }
        } else {
            gates_saved[saved] = vec4<store_t>(0.0);
            c_saved[saved] = c_state[state];
            if (!projecting()) {
                h_state[s.h_next + b * p.hidden + s.j] = h_old;
            }
            y[out] = 0.0;
        }
    }
}
