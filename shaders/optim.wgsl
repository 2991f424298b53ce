// Optimizers with PyTorch's update rules, and global-norm clipping.
//
// `sum_squares` writes each workgroup's Σ g² of one gradient tensor to
// partials[offset + wg]; `clip` (one workgroup) sums every partial into the
// global norm and the clipping factor (torch.nn.utils.clip_grad_norm_:
// min(1, max_norm / (norm + 1e-6))); `update` updates one parameter tensor:
//   SGD:   g += wd·p;  buf = g (first step) | μ·buf + (1-dampening)·g;
//          g = nesterov ? g + μ·buf : buf;  p -= lr·g
//   Adam:  g += wd·p;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
//          p -= (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + eps)
//   AdamW: p *= 1 - lr·wd, then Adam without weight decay.
// The learning rate, Adam's bias corrections and the clipping factor come
// from the shared TrainScalars.
//
// Loss scaling (f16 training; torch.cuda.amp.GradScaler's rule): gradients
// arrive multiplied by s.grad_scale. `clip` divides it out of the norm and
// folds 1/grad_scale into clip_coef; when the gradients are not finite it
// flags the step (`update` then changes nothing) and, with dynamic scaling,
// halves the scale; after growth_interval clean steps in a row it doubles it.

struct OptParams {
    len: u32,          // elements of this tensor
    kind: u32,         // 0 SGD, 1 Adam, 2 AdamW
    partial_off: u32,  // where this tensor's sum_squares partials go
    nesterov: u32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    partial_count: u32, // clip: total partials over all tensors
    growth_interval: u32, // clip: clean steps before a dynamic loss scale doubles
    clip_value: f32,    // update: clamp each gradient element to ±this (after the norm); 0 = off
    inv_accumulation: f32, // finalize: 1/N for gradient accumulation over N batches
    _pad1: u32,
    _pad2: u32,
}

// WG (the workgroup width) and PARTIALS_PER_TENSOR are declared before this
// file by the kernel builder, from `FLAT_GROUP` and `PARTIALS_PER_TENSOR` in
// src/gpu/kernels/.

@group(0) @binding(0) var<uniform> p: OptParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;      // momentum buffer, or Adam's m
@group(0) @binding(4) var<storage, read_write> v: array<f32>;      // Adam's v (unused by SGD)
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> s: TrainScalars;

var<workgroup> shares: array<f32, WG>;

fn workgroup_sum(x: f32, lane: u32) -> f32 {
    shares[lane] = x;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
        if (lane < w) {
            shares[lane] += shares[lane + w];
        }
        workgroupBarrier();
    }
    return shares[0];
}

// Dispatched with PARTIALS_PER_TENSOR workgroups, grid-stride over the tensor.
@compute @workgroup_size(WG, 1, 1)
fn sum_squares(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    var acc = 0.0;
    for (var i = wg.x * WG + lid.x; i < p.len; i += PARTIALS_PER_TENSOR * WG) {
        acc += grad[i] * grad[i];
    }
    let total = workgroup_sum(acc, lid.x);
    if (lid.x == 0u) {
        partials[p.partial_off + wg.x] = total;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn clip(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < p.partial_count; i += WG) {
        acc += partials[i];
    }
    let total = workgroup_sum(acc, lid.x);
    if (lid.x == 0u) {
        let scale = s.grad_scale;
        let norm = sqrt(total) / scale;
        s.grad_norm = norm;
        var coef = 1.0;
        if (s.clip_max > 0.0) {
            coef = min(1.0, s.clip_max / (norm + 1e-6));
        }
        s.clip_coef = coef / scale;
        if (s.scaling != 0u) {
            let overflow = not_finite(total);
            s.found_inf = u32(overflow);
            if (overflow) {
                s.skipped += 1u;
                s.growth_count = 0u;
                if (s.scaling == 2u) {
                    s.grad_scale = scale * 0.5;
                }
            } else if (s.scaling == 2u) {
                s.growth_count += 1u;
                if (s.growth_count >= p.growth_interval) {
                    s.grad_scale = scale * 2.0;
                    s.growth_count = 0u;
                }
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = gid.x + gid.y * n.x * WG;
    // Once a loss was not finite, nothing is updated again (the host reports
    // the step when it reads the scalars). A step whose scaled gradients
    // overflowed is skipped.
    if (i >= p.len || s.bad_step != 0u || s.found_inf != 0u) {
        return;
    }
    var g = grad[i] * s.clip_coef;
    if (p.clip_value > 0.0) {
        g = clamp(g, -p.clip_value, p.clip_value);
    }
    var w = param[i];
    if (p.kind == 0u) {
        g += p.weight_decay * w;
        if (p.momentum != 0.0) {
            var buf = g;
            if (s.first == 0.0) {
                buf = p.momentum * m[i] + (1.0 - p.dampening) * g;
            }
            m[i] = buf;
            if (p.nesterov == 1u) {
                g = g + p.momentum * buf;
            } else {
                g = buf;
            }
        }
        param[i] = w - s.lr * g;
        return;
    }
    if (p.kind == 2u) {
        w = w * (1.0 - s.lr * p.weight_decay);
    } else {
        g += p.weight_decay * w;
    }
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / sqrt(s.bias2) + p.eps;
    param[i] = w - (s.lr / s.bias1) * mi / denom;
}

// Gradient accumulation over N batches. `accumulate`, at each batch but the
// N-th: param (bound to the tensor's accumulator) += grad. `finalize`, at the
// N-th, before the norms: param (bound to the gradient) = (param + grad
// (bound to the accumulator)) / N; the host clears the accumulator after.
@compute @workgroup_size(WG, 1, 1)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = gid.x + gid.y * n.x * WG;
    if (i < p.len) {
        param[i] += grad[i];
    }
}

@compute @workgroup_size(WG, 1, 1)
fn finalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = gid.x + gid.y * n.x * WG;
    if (i < p.len) {
        param[i] = (param[i] + grad[i]) * p.inv_accumulation;
    }
}
