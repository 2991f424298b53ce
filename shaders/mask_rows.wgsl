// Input dropout (training): multiplies a layer's input, or its gradient,
// [T, B, cols], in place by the layer's input mask [B, cols], the same at
// every step. The mask is f32 bits in the lengths buffer from u32 index
// `offset` (see src/gpu/lstm/masks.rs). The forward pass runs it on a copy
// of the layer's input before the input projection; the backward pass on
// dX = dG · W_ih, which gives the layer below dX ⊙ m_x.

struct MaskParams {
    batch: u32,   // B
    cols: u32,    // features per row
    total: u32,   // T · B · cols
    offset: u32,  // where the mask starts in `lengths`
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: MaskParams;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;  // [T, B, cols]
@group(0) @binding(2) var<storage, read> lengths: array<u32>;     // lengths [B], then masks

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.total) {
        return;
    }
    let row = (idx / p.cols) % p.batch;
    let f = idx % p.cols;
    data[idx] *= bitcast<f32>(lengths[p.offset + row * p.cols + f]);
}
