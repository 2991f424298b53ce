// Tiled GEMM: C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) (+ bias[N..2N]) (+ C).
//
// Each 16×16 workgroup computes a 64×64 tile of C; each invocation a 4×4
// register block. K advances in steps of 16 through workgroup-memory tiles.
// Any M, N, K: loads past an edge read 0 and stores past it are skipped.
// op(A) = A, or Aᵀ when TRANS_A (A stored [K, M]); likewise B (stored [N, K]).
// Offsets (in elements) let one binding address a slice of a larger buffer.
//
// Each operand is stored as the alias a_t, b_t, bias_t or c_t (f32 or f16,
// declared before this file by the kernel builder); loads widen to f32, the
// products accumulate in f32, and only the final store narrows to c_t.

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
    flags: u32,    // TRANS_A | TRANS_B | BIAS | ACCUMULATE | BIAS_PAIR
    _pad: u32,
}

const TRANS_A: u32 = 1u;
const TRANS_B: u32 = 2u;
const BIAS: u32 = 4u;
const ACCUMULATE: u32 = 8u;
const BIAS_PAIR: u32 = 16u;

// BM and BN, the output tile (BM = BN), are declared before this file by the
// kernel builder, from `TILE` in src/gpu/kernels/gemm.rs, which also counts
// the workgroups.
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<a_t>;          // A as stored
@group(0) @binding(2) var<storage, read> b: array<b_t>;          // B as stored
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;    // [N] at bias_off
@group(0) @binding(4) var<storage, read_write> c: array<c_t>;    // [M, ldc] at c_off

var<workgroup> tile_a: array<f32, BK * BM>;   // [BK][BM]
var<workgroup> tile_b: array<f32, BK * BN>;   // [BK][BN]

fn load_a(m: u32, k: u32) -> f32 {
    if (m >= p.m || k >= p.k) {
        return 0.0;
    }
    if ((p.flags & TRANS_A) != 0u) {
        return f32(a[p.a_off + k * p.lda + m]);
    }
    return f32(a[p.a_off + m * p.lda + k]);
}

fn load_b(k: u32, n: u32) -> f32 {
    if (k >= p.k || n >= p.n) {
        return 0.0;
    }
    if ((p.flags & TRANS_B) != 0u) {
        return f32(b[p.b_off + n * p.ldb + k]);
    }
    return f32(b[p.b_off + k * p.ldb + n]);
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    // Row i of this invocation's 4×4 block is one vec4 (columns j = 0..3).
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < TM; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    // Neighbouring invocations load neighbouring addresses: along K when the
    // stored rows run along K, along M (or N) when they run along it.
    let a_k_fast = (p.flags & TRANS_A) == 0u;
    let b_k_fast = (p.flags & TRANS_B) != 0u;

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            var mm = e % BM;
            var ka = e / BM;
            if (a_k_fast) {
                ka = e % BK;
                mm = e / BK;
            }
            tile_a[ka * BM + mm] = load_a(row0 + mm, k0 + ka);
            var nn = e % BN;
            var kb = e / BN;
            if (b_k_fast) {
                kb = e % BK;
                nn = e / BK;
            }
            tile_b[kb * BN + nn] = load_b(k0 + kb, col0 + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b0 = kk * BN + lid.x * TN;
            let bv = vec4<f32>(tile_b[b0], tile_b[b0 + 1u], tile_b[b0 + 2u], tile_b[b0 + 3u]);
            let a0 = kk * BM + lid.y * TM;
            acc[0] = fma(vec4<f32>(tile_a[a0]), bv, acc[0]);
            acc[1] = fma(vec4<f32>(tile_a[a0 + 1u]), bv, acc[1]);
            acc[2] = fma(vec4<f32>(tile_a[a0 + 2u]), bv, acc[2]);
            acc[3] = fma(vec4<f32>(tile_a[a0 + 3u]), bv, acc[3]);
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = row0 + lid.y * TM + i;
        for (var j = 0u; j < TN; j++) {
            let n = col0 + lid.x * TN + j;
            if (m < p.m && n < p.n) {
                var v = acc[i][j];
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
        }
    }
}
