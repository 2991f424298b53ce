// The lane reduction shared by the forward step kernels (lstm_step.wgsl and
// lstm_wavefront.wgsl, placed before each): the KL lanes of each of a
// workgroup's UPW units hold partial sums of RB rows' four gate
// pre-activations; their totals meet in a tree reduction in workgroup
// memory, RC rows at a time, and lane r < RB of each unit gets row r's
// total. KL, UPW, RB, RC and WGS = KL · UPW are declared before this file.

var<workgroup> red: array<vec4<f32>, RC * WGS>;   // [RC][WGS]: partial sums of RC rows

// Called by every invocation of the workgroup, in uniform control flow (it
// holds barriers). `lane` is lid % KL, `unit` lid / KL.
fn reduce_lanes(acc: ptr<function, array<vec4<f32>, RB>>, lane: u32, unit: u32, lid: u32) -> vec4<f32> {
    var total = vec4<f32>(0.0);
    for (var c = 0u; c < RB; c += RC) {
        for (var rr = 0u; rr < RC; rr++) {
            red[rr * WGS + lid] = (*acc)[c + rr];
        }
        workgroupBarrier();
        for (var stride = KL / 2u; stride > 0u; stride /= 2u) {
            if (lane < stride) {
                for (var rr = 0u; rr < RC; rr++) {
                    red[rr * WGS + lid] += red[rr * WGS + lid + stride];
                }
            }
            workgroupBarrier();
        }
        if (lane >= c && lane < c + RC) {
            total = red[(lane - c) * WGS + unit * KL];
        }
        workgroupBarrier();
    }
    return total;
}
