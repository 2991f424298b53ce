// Swaps the first two axes of a row-major tensor: dst[j, i, f] = src[i, j, f].
// Converts between time-major [T, B, F] and batch-first [B, T, F].

struct PermuteParams {
    rows: u32,    // size of src axis 0
    cols: u32,    // size of src axis 1
    inner: u32,   // F
    _pad: u32,
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: PermuteParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;         // [rows, cols, inner]
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;   // [cols, rows, inner]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let total = p.rows * p.cols * p.inner;
    if (idx >= total) {
        return;
    }
    let f = idx % p.inner;
    let j = (idx / p.inner) % p.cols;
    let i = idx / (p.inner * p.cols);
    dst[(j * p.rows + i) * p.inner + f] = src[idx];
}
