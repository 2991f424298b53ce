// Zeroes one gate slot of a gradient in the GPU layout (rows by unit, row
// 4j + q): every element of the rows whose slot q equals `slot`, in
// `data[offset .. offset + rows · cols]`. A GRU's weights are padded to four
// slots (src/gpu/lstm/gru.rs); their padding rows' gradients are cleared so
// that the optimizer leaves those rows at zero.

struct SlotParams {
    rows: u32,    // rows of the matrix (D · 4H)
    cols: u32,    // elements per row
    slot: u32,    // the slot q to clear
    offset: u32,  // the matrix's first element in `data`
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: SlotParams;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // One invocation per element of the slot's rows: rows / 4 rows of cols.
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= (p.rows / 4u) * p.cols) {
        return;
    }
    let row = 4u * (idx / p.cols) + p.slot;
    data[p.offset + row * p.cols + idx % p.cols] = 0.0;
}
