// Losses with their gradients, fused: each row writes d loss / d prediction
// and its share of the loss; `finish` sums the shares.
//
// `mse`: PyTorch MSELoss (mean). With `per_step`, rows are time-major (t, b)
// and rows past lengths[b] are left out of the loss and get zero gradient.
// `bce_with_logits`: PyTorch BCEWithLogitsLoss (mean), masked as `mse`.
// `cross_entropy`: PyTorch CrossEntropyLoss on logits with class indices,
// mean over targets that are not `ignore_index`; a stable log-softmax.
// The host counts what the mean divides by (`inv_count`) and checks classes.
// Gradients are multiplied by the loss scale `grad_scale` (1 unless training
// in f16), which the optimizer divides out again.

struct LossParams {
    rows: u32,
    cols: u32,
    batch: u32,        // B, for the per-step mask
    per_step: u32,     // 1: mask rows (t, b) with t >= lengths[b]
    has_ignore: u32,
    ignore_index: i32,
    _pad0: u32,
    _pad1: u32,
}

// WG, the workgroup width, is declared before this file by the kernel
// builder, from `FLAT_GROUP` in src/gpu/kernels/mod.rs.

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;          // [rows, cols]
@group(0) @binding(2) var<storage, read> target_f: array<f32>;      // [rows, cols] (mse)
@group(0) @binding(3) var<storage, read> target_i: array<i32>;      // [rows] (cross_entropy)
@group(0) @binding(4) var<storage, read> lengths: array<u32>;       // [B]
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;    // [rows, cols]
@group(0) @binding(6) var<storage, read_write> partials: array<f32>; // [workgroups]
@group(0) @binding(7) var<storage, read_write> s: TrainScalars;

var<workgroup> shares: array<f32, WG>;

fn row_valid(r: u32) -> bool {
    if (r >= p.rows) {
        return false;
    }
    if (p.per_step == 1u) {
        return r / p.batch < lengths[r % p.batch];
    }
    return true;
}

// Sums `v` over the workgroup into partials[wg].
fn reduce_share(v: f32, lane: u32, wg: u32) {
    shares[lane] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
        if (lane < w) {
            shares[lane] += shares[lane + w];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        partials[wg] = shares[0];
    }
}

@compute @workgroup_size(WG, 1, 1)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = gid.x;
    var share = 0.0;
    if (r < p.rows) {
        let valid = row_valid(r);
        for (var c = 0u; c < p.cols; c++) {
            let i = r * p.cols + c;
            let d = pred[i] - target_f[i];
            if (valid) {
                share += d * d;
                grad[i] = 2.0 * d * s.inv_count * s.grad_scale;
            } else {
                grad[i] = 0.0;
            }
        }
    }
    reduce_share(share, lid.x, wg.x);
}

// nn.BCEWithLogitsLoss (mean), masked as `mse`: per element
// max(z, 0) − z·y + log(1 + exp(−|z|)), gradient σ(z) − y.
@compute @workgroup_size(WG, 1, 1)
fn bce_with_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = gid.x;
    var share = 0.0;
    if (r < p.rows) {
        let valid = row_valid(r);
        for (var c = 0u; c < p.cols; c++) {
            let i = r * p.cols + c;
            let z = pred[i];
            let y = target_f[i];
            if (valid) {
                let e = exp(-abs(z));
                // log(1 + e) with e in (0, 1]: the series where e is tiny, where
                // 1 + e rounds to 1 in f32.
                var softplus = log(1.0 + e);
                if (e < 1e-4) {
                    softplus = e * (1.0 - 0.5 * e);
                }
                share += max(z, 0.0) - z * y + softplus;
                grad[i] = (sigmoid(z) - y) * s.inv_count * s.grad_scale;
            } else {
                grad[i] = 0.0;
            }
        }
    }
    reduce_share(share, lid.x, wg.x);
}

@compute @workgroup_size(WG, 1, 1)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = gid.x;
    var share = 0.0;
    if (r < p.rows) {
        let k = target_i[r];
        let ignored = p.has_ignore == 1u && k == p.ignore_index;
        let base = r * p.cols;
        if (ignored || !row_valid(r)) {
            for (var c = 0u; c < p.cols; c++) {
                grad[base + c] = 0.0;
            }
        } else {
            var m = pred[base];
            for (var c = 1u; c < p.cols; c++) {
                m = max(m, pred[base + c]);
            }
            var sum = 0.0;
            for (var c = 0u; c < p.cols; c++) {
                sum += exp(pred[base + c] - m);
            }
            share = m + log(sum) - pred[base + u32(k)];
            for (var c = 0u; c < p.cols; c++) {
                var g = exp(pred[base + c] - m) / sum;
                if (c == u32(k)) {
                    g -= 1.0;
                }
                grad[base + c] = g * s.inv_count * s.grad_scale;
            }
        }
    }
    reduce_share(share, lid.x, wg.x);
}

// One workgroup: loss = inv_count · Σ partials.
@compute @workgroup_size(WG, 1, 1)
fn finish(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let count = (p.rows + WG - 1u) / WG;
    var v = 0.0;
    for (var i = lid.x; i < count; i += WG) {
        v += partials[i];
    }
    shares[lid.x] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
        if (lid.x < w) {
            shares[lid.x] += shares[lid.x + w];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let loss = shares[0] * s.inv_count;
        s.loss = loss;
        if (not_finite(loss) && s.bad_step == 0u) {
            s.bad_step = s.step_index + 1u;
        }
    }
}
