// Index-driven copies for heads and inputs, forward and backward:
// `last_step` picks each sequence's last valid output for a many-to-one
// head, `last_step_backward` puts its gradient back in place;
// `embed` looks token embeddings up, `embed_backward` sums their gradients
// per vocabulary row (one invocation per (row, feature): deterministic, no
// atomics).

struct GatherParams {
    seq_len: u32,   // T
    batch: u32,     // B
    features: u32,  // F (output features, or embedding dim)
    vocab: u32,     // embedding rows
    tokens: u32,    // T·B
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;   // lengths [B], or tokens [T·B]

fn flat_index(gid: vec3<u32>, n: vec3<u32>) -> u32 {
    return gid.x + gid.y * n.x * WG;
}

// dst [B, F] = src [T, B, F] at t = lengths[b] - 1.
@compute @workgroup_size(WG, 1, 1)
fn last_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat_index(gid, n);
    if (i >= p.batch * p.features) {
        return;
    }
    let b = i / p.features;
    let f = i % p.features;
    let t = index[b] - 1u;
    dst[i] = src[(t * p.batch + b) * p.features + f];
}

// dst [T, B, F] = src [B, F] at t = lengths[b] - 1, zero elsewhere.
@compute @workgroup_size(WG, 1, 1)
fn last_step_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat_index(gid, n);
    if (i >= p.seq_len * p.batch * p.features) {
        return;
    }
    let f = i % p.features;
    let b = (i / p.features) % p.batch;
    let t = i / (p.features * p.batch);
    var v = 0.0;
    if (t + 1u == index[b]) {
        v = src[b * p.features + f];
    }
    dst[i] = v;
}

// dst [T·B, F] = src [vocab, F] at row tokens[i].
@compute @workgroup_size(WG, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat_index(gid, n);
    if (i >= p.tokens * p.features) {
        return;
    }
    let f = i % p.features;
    dst[i] = src[index[i / p.features] * p.features + f];
}

// dst [vocab, F] = Σ over positions with tokens[k] == row of src [T·B, F].
@compute @workgroup_size(WG, 1, 1)
fn embed_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat_index(gid, n);
    if (i >= p.vocab * p.features) {
        return;
    }
    let row = i / p.features;
    let f = i % p.features;
    var acc = 0.0;
    for (var k = 0u; k < p.tokens; k++) {
        if (index[k] == row) {
            acc += src[k * p.features + f];
        }
    }
    dst[i] = acc;
}
