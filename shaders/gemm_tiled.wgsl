// The tiled GEMM body (appended to gemm.wgsl; see there).
//
// Each workgroup of WX × WY invocations computes a BM × BN tile of C; each
// invocation a TM × TN block of it, interleaved (rows ty + i·WY, columns
// tx + j·WX), so that neighbouring invocations read neighbouring words of the
// workgroup tiles (no bank conflicts) and store neighbouring elements of C.
// The block is one named variable per element (see `main`).
// K advances BK at a time through workgroup-memory tiles of A and B.
//
// Loads are coalesced: neighbouring invocations load neighbouring elements
// along whichever dimension the operand stores contiguously. A tile stored
// with K across invocations (A untransposed, B transposed) is padded (AP,
// BP words per K row) so that those stores hit distinct banks. A tile that
// lies wholly inside M, N and K loads without bounds checks; edge tiles read
// 0 past an edge, and stores past an edge are skipped.

const WG: u32 = WX * WY;
const AS: u32 = BM + AP;          // words per K row of tile_a
const BS: u32 = BN + BP;          // words per K row of tile_b
const A_LOADS: u32 = BM * BK / WG;
const B_LOADS: u32 = BN * BK / WG;

var<workgroup> tile_a: array<f32, BK * AS>;   // [BK][BM (+ pad)]
var<workgroup> tile_b: array<f32, BK * BS>;   // [BK][BN (+ pad)]

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

// Loads one K step of both tiles; `full`: the tile lies inside M, N and
// the slice's K, which ends at `k_end`.
fn load_tiles(li: u32, row0: u32, col0: u32, k0: u32, k_end: u32, full: bool) {
    for (var r = 0u; r < A_LOADS; r++) {
        let s = a_slot(li + r * WG);
        let m = row0 + s.x;
        let k = k0 + s.y;
        var v = 0.0;
        if (full || (m < p.m && k < k_end)) {
            v = f32(a[a_index(m, k)]);
        }
        tile_a[s.y * AS + s.x] = v;
    }
    for (var r = 0u; r < B_LOADS; r++) {
        let s = b_slot(li + r * WG);
        let n = col0 + s.x;
        let k = k0 + s.y;
        var v = 0.0;
        if (full || (n < p.n && k < k_end)) {
            v = f32(b[b_index(k, n)]);
        }
        tile_b[s.y * BS + s.x] = v;
    }
}

// The register block is spelled out by the kernel builder (`GemmTile::body`
// in src/gpu/kernels/gemm.rs), one named variable per element, so that it
// stays in registers on every compiler: DECLARE declares c_i_j = 0 for
// i < TM, j < TN; ACCUMULATE loads a_i = tile_a[kk·AS + ty + i·WY] and
// b_j = tile_b[kk·BS + tx + j·WX] and adds a_i · b_j to each c_i_j; STORE
// stores each c_i_j at (row0 + ty + i·WY, col0 + tx + j·WX). With a split K,
// workgroup z reduces its slice of K (`k_bounds`).
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
    let ks = k_bounds(wg.z);
    let inside = row0 + BM <= p.m && col0 + BN <= p.n;
    for (var k0 = ks.x; k0 < ks.y; k0 += BK) {
        load_tiles(li, row0, col0, k0, ks.y, inside && k0 + BK <= ks.y);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
//{ACCUMULATE}
        }
        workgroupBarrier();
    }
//{STORE}
}
