// A column reduction: dst[dst_off + j] = Σ_r src[src_off + r·ld + j] over
// `rows` rows, for every column j < cols; with `pair`, also into
// dst[dst_off + cols + j]. It computes the bias gradient (b_ih and b_hh enter
// the gates as one sum, so their gradients are equal: `pair`), and adds the
// slices of a GEMM with a split K (each slice's M × N partial product one
// "row" of M·N columns).
//
// A workgroup owns 64 consecutive columns (neighbouring invocations read
// neighbouring elements of a row) and splits the rows over 4 slices; the
// slices' sums meet once in workgroup memory. A longer reduction runs in
// blocks of at most 16384 rows, each adding to the last (lavapipe returned
// wrong sums from loops of tens of thousands of iterations). `src_t` (f32 or
// f16, the gate gradients' storage) is declared before this file; sums are
// f32, in a fixed order.

struct ColumnSumParams {
    rows: u32,
    cols: u32,
    ld: u32,
    src_off: u32,
    pair: u32,
    accumulate: u32,   // 1: add to dst (a later block of at most 16384 rows)
    dst_off: u32,      // first element of dst
    _pad: u32,
}

const WX: u32 = 64u;
const WY: u32 = 4u;

@group(0) @binding(0) var<uniform> p: ColumnSumParams;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> part: array<f32, WX * WY>;

@compute @workgroup_size(WX, WY, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = wg.x * WX + lid.x;
    var s = 0.0;
    if (j < p.cols) {
        for (var r = lid.y; r < p.rows; r += WY) {
            s += f32(src[p.src_off + r * p.ld + j]);
        }
    }
    part[lid.y * WX + lid.x] = s;
    workgroupBarrier();
    if (lid.y == 0u && j < p.cols) {
        var t = ((part[lid.x] + part[WX + lid.x]) + part[2u * WX + lid.x]) + part[3u * WX + lid.x];
        if (p.accumulate == 1u) {
            t += dst[p.dst_off + j];
        }
        dst[p.dst_off + j] = t;
        if (p.pair == 1u) {
            dst[p.dst_off + p.cols + j] = t;
        }
    }
}
