// The direct GEMM body (appended to gemm.wgsl; see there): no workgroup
// memory and no barriers.
//
// A workgroup of WX invocations (WY = 1) computes TM rows × BN = WX·TN
// columns of C; each invocation all TM rows of its TN columns, interleaved
// (columns tx + j·WX), so that neighbouring invocations read neighbouring
// elements of B (coalesced in layout NN) and store neighbouring elements of
// C. Every invocation reads the same element of A at each step: an address
// uniform across the workgroup, which GPUs serve as one broadcast load (and
// a SIMD CPU implementation as one scalar load). Each element of B is read
// by one invocation per workgroup row, from cache; no element is staged.
//
// Past the edges of M and N, loads are clamped to the last row or column
// (valid addresses, no branch in the loop) and the stores skipped, so the
// K loop is the same for every invocation. The block is spelled out by the
// kernel builder (`GemmTile::source`): DECLARE sets the row and column bases
// and c_i_j = 0; ACCUMULATE loads a_i and b_j at step k and adds a_i · b_j
// to each c_i_j; STORE stores them.

// Where row m of op(A) and column n of op(B) start as stored, and the
// stride from one k to the next.
fn a_base(m: u32) -> u32 {
    if (TA == 1u) {
        return p.a_off + m;
    }
    return p.a_off + m * p.lda;
}

fn b_base(n: u32) -> u32 {
    if (TB == 1u) {
        return p.b_off + n * p.ldb;
    }
    return p.b_off + n;
}

@compute @workgroup_size(WX, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row0 = wg.y * TM;
    let col0 = wg.x * BN;
    let tx = lid.x;
    let last_m = p.m - 1u;
    let last_n = p.n - 1u;
    var a_step = 1u;
    if (TA == 1u) {
        a_step = p.lda;
    }
    var b_step = p.ldb;
    if (TB == 1u) {
        b_step = 1u;
    }
//{DECLARE}
    let ks = k_bounds(wg.z);
    for (var k = ks.x; k < ks.y; k++) {
        let ka = k * a_step;
        let kb = k * b_step;
//{ACCUMULATE}
    }
//{STORE}
}
