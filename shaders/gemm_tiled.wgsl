// The tiled GEMM body (appended to gemm.wgsl; see there).
//
// Each workgroup of WX × WY invocations computes a BM × BN tile of C; each
// invocation a TM × TN block of it, interleaved (rows ty + i·WY, columns
// tx + j·WX), so that neighbouring invocations read neighbouring words of the
// workgroup tiles (no bank conflicts) and store neighbouring elements of C.
// The block is one named variable per element (see `main`).
// K advances BK at a time through workgroup-memory tiles of A and B.
//
// Loads are coalesced: neighbouring invocations load neighbouring groups of
// VW elements (VW = 4: one vec4 load each, on operands whose offsets and
// row strides are multiples of 4) along whichever dimension the operand
// stores contiguously. A tile stored with K across invocations (A
// untransposed, B transposed) is padded (AP, BP words per K row) so that
// those stores hit distinct banks. A tile that lies wholly inside M, N and
// K loads without bounds checks; edge tiles read 0 past an edge, and stores
// past an edge are skipped. The next K step is fetched into registers
// while the current one is multiplied (double buffering through registers,
// which keeps the workgroup memory within WebGPU's 16 KiB).

const WG: u32 = WX * WY;
const AS: u32 = BM + AP;          // words per K row of tile_a
const BS: u32 = BN + BP;          // words per K row of tile_b
const A_LOADS: u32 = BM * BK / WG;
const B_LOADS: u32 = BN * BK / WG;

var<workgroup> tile_a: array<f32, BK * AS>;   // [BK][BM (+ pad)]
var<workgroup> tile_b: array<f32, BK * BS>;   // [BK][BN (+ pad)]

// This invocation's share of the next K step of each tile, fetched from
// memory before the current step's products and stored to the tiles after
// them: the global loads' latency overlaps the arithmetic.
var<private> ra: array<f32, A_LOADS>;
var<private> rb: array<f32, B_LOADS>;

// Group g of VW elements of the A tile: the (m, k) of its first element; a
// group runs along the dimension A is stored contiguous in (K when TA = 0,
// M when TA = 1), and neighbouring invocations take neighbouring groups.
fn a_group(g: u32) -> vec2<u32> {
    if (TA == 1u) {
        return vec2<u32>(g % (BM / VW) * VW, g / (BM / VW));
    }
    return vec2<u32>(g / (BK / VW), g % (BK / VW) * VW);
}

// Group g of the B tile: the (n, k) of its first element (along K when
// TB = 1, along N when TB = 0).
fn b_group(g: u32) -> vec2<u32> {
    if (TB == 1u) {
        return vec2<u32>(g / (BK / VW), g % (BK / VW) * VW);
    }
    return vec2<u32>(g % (BN / VW) * VW, g / (BN / VW));
}

// Where element e of a group starting at s = (m or n, k) sits in its tile.
fn a_tile(s: vec2<u32>, e: u32) -> u32 {
    if (TA == 1u) {
        return s.y * AS + s.x + e;
    }
    return (s.y + e) * AS + s.x;
}

fn b_tile(s: vec2<u32>, e: u32) -> u32 {
    if (TB == 1u) {
        return (s.y + e) * BS + s.x;
    }
    return s.y * BS + s.x + e;
}

// Fetches the K step at k0 of both tiles into ra and rb; `full`: the tile
// lies inside M, N and the slice's K, which ends at `k_end` (one load per
// group, no bounds checks); otherwise each element is checked and reads 0
// past an edge.
fn fetch(li: u32, row0: u32, col0: u32, k0: u32, k_end: u32, full: bool) {
    for (var r = 0u; r < A_LOADS / VW; r++) {
        let s = a_group(li + r * WG);
        let m = row0 + s.x;
        let k = k0 + s.y;
        if (full) {
            let v = ld_a4(a_index(m, k));
            for (var e = 0u; e < VW; e++) {
                ra[r * VW + e] = v[e];
            }
        } else {
            for (var e = 0u; e < VW; e++) {
                let me = m + e * TA;
                let ke = k + e * (1u - TA);
                var v = 0.0;
                if (me < p.m && ke < k_end) {
                    v = ld_a(a_index(me, ke));
                }
                ra[r * VW + e] = v;
            }
        }
    }
    for (var r = 0u; r < B_LOADS / VW; r++) {
        let s = b_group(li + r * WG);
        let n = col0 + s.x;
        let k = k0 + s.y;
        if (full) {
            let v = ld_b4(b_index(k, n));
            for (var e = 0u; e < VW; e++) {
                rb[r * VW + e] = v[e];
            }
        } else {
            for (var e = 0u; e < VW; e++) {
                let ne = n + e * (1u - TB);
                let ke = k + e * TB;
                var v = 0.0;
                if (ne < p.n && ke < k_end) {
                    v = ld_b(b_index(ke, ne));
                }
                rb[r * VW + e] = v;
            }
        }
    }
}

// Stores what `fetch` fetched into the workgroup tiles.
fn stash(li: u32) {
    for (var r = 0u; r < A_LOADS / VW; r++) {
        let s = a_group(li + r * WG);
        for (var e = 0u; e < VW; e++) {
            tile_a[a_tile(s, e)] = ra[r * VW + e];
        }
    }
    for (var r = 0u; r < B_LOADS / VW; r++) {
        let s = b_group(li + r * WG);
        for (var e = 0u; e < VW; e++) {
            tile_b[b_tile(s, e)] = rb[r * VW + e];
        }
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
    if (ks.x < ks.y) {
        fetch(li, row0, col0, ks.x, ks.y, inside && ks.x + BK <= ks.y);
    }
    for (var k0 = ks.x; k0 < ks.y; k0 += BK) {
        workgroupBarrier();   // the last step's products are done with the tiles
        stash(li);
        workgroupBarrier();
        let next = k0 + BK;
        if (next < ks.y) {
            fetch(li, row0, col0, next, ks.y, inside && next + BK <= ks.y);
        }
        for (var kk = 0u; kk < BK; kk++) {
//{ACCUMULATE}
        }
    }
//{STORE}
}
