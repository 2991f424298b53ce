// The activation of a hidden dense layer, elementwise over [rows, units]:
// `forward` writes a = act(z) from the GEMM's z = x · Wᵀ + b; `backward`
// turns da into dz = da · act'(a) in place, from the saved a (the
// derivative as `Activation::derivative_from_output` in src/config.rs).

struct DenseParams {
    len: u32,   // rows · units
    kind: u32,  // 0 tanh, 1 relu
    _pad0: u32,
    _pad1: u32,
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.
@group(0) @binding(0) var<uniform> p: DenseParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // z (forward) or a (backward)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // a (forward) or da → dz (backward)

fn flat(gid: vec3<u32>, n: vec3<u32>) -> u32 {
    return gid.x + gid.y * n.x * WG;
}

@compute @workgroup_size(WG, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(gid, n);
    if (i < p.len) {
        let z = src[i];
        dst[i] = select(tanh_safe(z), max(z, 0.0), p.kind == 1u);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(gid, n);
    if (i < p.len) {
        let a = src[i];
        let d = select(1.0 - a * a, select(0.0, 1.0, a > 0.0), p.kind == 1u);
        dst[i] = dst[i] * d;
    }
}
