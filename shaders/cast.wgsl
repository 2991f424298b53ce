// Narrows f32 master weights into the working copy the LSTM kernels read:
// dst[i] = store_t(src[i]). After each optimizer update of f16 training.
// `store_t` is declared before this file by the kernel builder.

// The leading field of the tensor's OptParams entry, which this kernel shares.
struct CastParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: CastParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;            // [len] master
@group(0) @binding(2) var<storage, read_write> dst: array<store_t>;  // [len] working copy

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = gid.x + gid.y * n.x * WG;
    if (i < p.len) {
        dst[i] = store_t(src[i]);
    }
}
