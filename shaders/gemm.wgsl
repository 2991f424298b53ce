// Tiled GEMM: C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) (+ bias[N..2N]) (+ C).
//
// Each workgroup of WX × WY invocations computes a BM × BN tile of C; each
// invocation a TM × TN block of it, interleaved (rows ty + i·WY, columns
// tx + j·WX), so that neighbouring invocations read neighbouring words of the
// workgroup tiles (no bank conflicts) and store neighbouring elements of C.
// The block is one named variable per element (see `main`).
// K advances BK at a time through workgroup-memory tiles of A and B.
// op(A) = A, or Aᵀ when TA = 1 (A stored [K, M]); op(B) = B, or Bᵀ when
// TB = 1 (B stored [N, K]). The layout is a pipeline constant, one pipeline
// per layout and tile, so loads carry no transpose branch. Offsets (in
// elements) let one binding address a slice of a larger buffer.
//
// Loads are coalesced: neighbouring invocations load neighbouring elements
// along whichever dimension the operand stores contiguously. A tile stored
// with K across invocations (A untransposed, B transposed) is padded (AP,
// BP words per K row) so that those stores hit distinct banks. A tile that
// lies wholly inside M, N and K loads without bounds checks; edge tiles read
// 0 past an edge, and stores past an edge are skipped.
//
// Each operand is stored as the alias a_t, b_t, bias_t or c_t (f32 or f16,
// declared before this file by the kernel builder); loads widen to f32, the
// products accumulate in f32, and only the final store narrows to c_t. BM,
// BN, BK, TM, TN, WX = BN / TN, WY = BM / TM, TA, TB, AP and BP are declared
// before this file from `GemmTile` and `GemmLayout` in src/gpu/kernels/gemm.rs.

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
    _pad: u32,
}

const BIAS: u32 = 4u;
const ACCUMULATE: u32 = 8u;
const BIAS_PAIR: u32 = 16u;

const WG: u32 = WX * WY;
const AS: u32 = BM + AP;          // words per K row of tile_a
const BS: u32 = BN + BP;          // words per K row of tile_b
const A_LOADS: u32 = BM * BK / WG;
const B_LOADS: u32 = BN * BK / WG;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<a_t>;          // A as stored
@group(0) @binding(2) var<storage, read> b: array<b_t>;          // B as stored
@group(0) @binding(3) var<storage, read> bias: array<bias_t>;    // [N] at bias_off
@group(0) @binding(4) var<storage, read_write> c: array<c_t>;    // [M, ldc] at c_off

var<workgroup> tile_a: array<f32, BK * AS>;   // [BK][BM (+ pad)]
var<workgroup> tile_b: array<f32, BK * BS>;   // [BK][BN (+ pad)]

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

// Element e of this invocation's share of the A tile: its (m, k) in the
// tile, K across invocations when A is stored K-contiguous.
fn a_slot(e: u32) -> vec2<u32> {
    if (TA == 1u) {
        return vec2<u32>(e % BM, e / BM);
    }
    return vec2<u32>(e / BK, e % BK);
}

fn b_slot(e: u32) -> vec2<u32> {
    if (TB == 1u) {
        return vec2<u32>(e / BK, e % BK);
    }
    return vec2<u32>(e % BN, e / BN);
}

// Loads one K step of both tiles; `full`: the tile lies inside M, N and K.
fn load_tiles(li: u32, row0: u32, col0: u32, k0: u32, full: bool) {
    for (var r = 0u; r < A_LOADS; r++) {
        let s = a_slot(li + r * WG);
        let m = row0 + s.x;
        let k = k0 + s.y;
        var v = 0.0;
        if (full || (m < p.m && k < p.k)) {
            v = f32(a[a_index(m, k)]);
        }
        tile_a[s.y * AS + s.x] = v;
    }
    for (var r = 0u; r < B_LOADS; r++) {
        let s = b_slot(li + r * WG);
        let n = col0 + s.x;
        let k = k0 + s.y;
        var v = 0.0;
        if (full || (n < p.n && k < p.k)) {
            v = f32(b[b_index(k, n)]);
        }
        tile_b[s.y * BS + s.x] = v;
    }
}

// Stores one element of C at (m, n), with the epilogue.
fn store(m: u32, n: u32, acc: f32) {
    if (m >= p.m || n >= p.n) {
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

// The register block is spelled out by the kernel builder (`GemmTile::body`
// in src/gpu/kernels/gemm.rs), one named variable per element, so that it
// stays in registers on every compiler: DECLARE declares c_i_j = 0 for
// i < TM, j < TN; ACCUMULATE loads a_i = tile_a[kk·AS + ty + i·WY] and
// b_j = tile_b[kk·BS + tx + j·WX] and adds a_i · b_j to each c_i_j; STORE
// stores each c_i_j at (row0 + ty + i·WY, col0 + tx + j·WX).
@compute @workgroup_size(WX, WY, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let ty = lid.y;
    let tx = lid.x;
//{DECLARE}
    let inside = row0 + BM <= p.m && col0 + BN <= p.n;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        load_tiles(li, row0, col0, k0, inside && k0 + BK <= p.k);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
//{ACCUMULATE}
        }
        workgroupBarrier();
    }
//{STORE}
}
