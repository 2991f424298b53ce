// GEMM: C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) (+ bias[N..2N]) (+ C).
//
// What both GEMM kernels share: the parameters, the bindings, the operand
// indexing and the epilogue. The kernel builder (src/gpu/kernels/gemm.rs)
// appends one of two bodies, the product's `GemmKind`:
//   gemm_tiled.wgsl   K through workgroup-memory tiles, a BM × BN tile of C
//                     per workgroup (WX × WY invocations, TM × TN each);
//   gemm_direct.wgsl  no workgroup memory: an invocation's TM rows are the
//                     whole workgroup's, so A is read at addresses uniform
//                     across the workgroup (a broadcast) and B once per
//                     invocation.
// op(A) = A, or Aᵀ when TA = 1 (A stored [K, M]); op(B) = B, or Bᵀ when
// TB = 1 (B stored [N, K]). The layout is a pipeline constant, one pipeline
// per layout and tile, so loads carry no transpose branch. Offsets (in
// elements) let one binding address a slice of a larger buffer.
//
// Each operand is stored as the alias a_t, b_t, bias_t or c_t (f32 or f16,
// declared before this file by the kernel builder); loads widen to f32, the
// products accumulate in f32, and only the final store narrows to c_t. BM,
// BN, BK, TM, TN, WX = BN / TN, WY = BM / TM, TA, TB, AP and BP are declared
// before this file from `GemmTile` and `GemmLayout`.

struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,      // row stride of A as stored
    ldb: u32,      // row stride of B as stored
    ldc: u32,      // row stride of C
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    flags: u32,    // BIAS | ACCUMULATE | BIAS_PAIR (the transposes are TA, TB)
    k_split: u32,  // 0, or rows of K per slice: slice z = workgroup_id.z
}

const BIAS: u32 = 4u;
const ACCUMULATE: u32 = 8u;
const BIAS_PAIR: u32 = 16u;

@group(0) @binding(0) var<uniform> p: GemmParams;
// A and B are bound as arrays of their storage type, or (VW = 4, a tiled
// kernel on aligned operands) of vec4s of it; `ld_a(i)` and `ld_b(i)` read
// element i either way, and `ld_a4(i)` and `ld_b4(i)` elements i..i+4 (i a
// multiple of VW; one vector load when VW = 4). The builder fills OPERANDS.
//{OPERANDS}
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;    // [N] at bias_off
@group(0) @binding(4) var<storage, read_write> c: array<c_t>;    // [M, ldc] at c_off

fn a_index(m: u32, k: u32) -> u32 {
    if (TA == 1u) {
        return p.a_off + k * p.lda + m;
    }
    return p.a_off + m * p.lda + k;
}

fn b_index(k: u32, n: u32) -> u32 {
    if (TB == 1u) {
        return p.b_off + n * p.ldb + k;
    }
    return p.b_off + k * p.ldb + n;
}

// The rows of K that slice z reduces: all of them, or with a split K
// (k_split > 0) rows [z·k_split, (z + 1)·k_split) of them.
fn k_bounds(z: u32) -> vec2<u32> {
    if (p.k_split == 0u) {
        return vec2<u32>(0u, p.k);
    }
    let k0 = z * p.k_split;
    return vec2<u32>(k0, min(k0 + p.k_split, p.k));
}

// Stores one element of C at (m, n), with the epilogue; with a split K,
// slice z's partial sum alone, into C's z-th M × ldc slab (a workspace that
// a column sum then reduces over the slices, in order).
fn store(m: u32, n: u32, acc: f32, z: u32) {
    if (m >= p.m || n >= p.n) {
        return;
    }
    if (p.k_split != 0u) {
        c[p.c_off + (z * p.m + m) * p.ldc + n] = c_t(acc);
        return;
    }
    var v = acc;
    if ((p.flags & BIAS) != 0u) {
        v += f32(bias[p.bias_off + n]);
    }
    if ((p.flags & BIAS_PAIR) != 0u) {
        // A second bias vector right after the first: b_ih + b_hh.
        v += f32(bias[p.bias_off + p.n + n]);
    }
    let idx = p.c_off + m * p.ldc + n;
    if ((p.flags & ACCUMULATE) != 0u) {
        v += f32(c[idx]);
    }
    c[idx] = c_t(v);
}

