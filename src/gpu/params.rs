//! Moving LSTM parameters between PyTorch's layout on the host and the GPU
//! layout ([`crate::gpu::layout`]) in [`GpuLayer`] buffers, converting to and
//! from each buffer's storage precision (f16 through the `half` crate).

use crate::config::{Cell, LstmConfig};
use crate::error::Result;
use crate::gpu::layout::{rows_by_gate, rows_by_unit};
use crate::gpu::lstm::gru;
use crate::gpu::tensor::{TENSOR_USAGE, read_buffers_async};
use crate::gpu::workspace::GpuLayer;
use crate::gpu::{GpuContext, Precision};
use crate::weights::{LayerNormWeights, LayerWeights, LstmWeights};

/// `data` as the bytes of `precision`, padded to a multiple of 4 bytes (the
/// copy alignment of `write_buffer`).
pub(crate) fn to_bytes(data: &[f32], precision: Precision) -> Vec<u8> {
    match precision {
        Precision::F32 => bytemuck::cast_slice(data).to_vec(),
        Precision::F16 => {
            let mut half: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
            if half.len() % 2 == 1 {
                half.push(half::f16::ZERO);
            }
            bytemuck::cast_slice(&half).to_vec()
        }
    }
}

/// The first `len` values of `bytes`, stored in `precision`, as f32.
pub(crate) fn from_bytes(bytes: &[u8], len: usize, precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => bytemuck::cast_slice::<u8, f32>(&bytes[..4 * len]).to_vec(),
        Precision::F16 => bytemuck::cast_slice::<u8, half::f16>(&bytes[..2 * len])
            .iter()
            .map(|v| v.to_f32())
            .collect(),
    }
}

/// A layer-normalised LSTM's gains and biases per direction, in units of H:
/// γ_ih, β_ih, γ_hh, β_hh (4H each), γ_c, β_c (H each).
pub(crate) const LN_PARAMS: usize = 18;

/// One direction's layer-norm parameters in the GPU layout
/// (`shaders/ln_common.wgsl`): the 4H-long vectors by unit, like the gates;
/// zeros where there are none (gradient buffers).
fn ln_to_gpu(ln: Option<&LayerNormWeights<f32>>, h: usize) -> Vec<f32> {
    let Some(ln) = ln else {
        return vec![0.0; LN_PARAMS * h];
    };
    let mut out = Vec::with_capacity(LN_PARAMS * h);
    for v in [&ln.ih_weight, &ln.ih_bias, &ln.hh_weight, &ln.hh_bias] {
        out.extend(rows_by_unit(v, h, 1));
    }
    out.extend_from_slice(&ln.cell_weight);
    out.extend_from_slice(&ln.cell_bias);
    out
}

/// The inverse of [`ln_to_gpu`].
fn ln_from_gpu(v: &[f32], h: usize) -> LayerNormWeights<f32> {
    let gate = |k: usize| rows_by_gate(&v[4 * k * h..4 * (k + 1) * h], h, 1);
    LayerNormWeights {
        ih_weight: gate(0),
        ih_bias: gate(1),
        hh_weight: gate(2),
        hh_bias: gate(3),
        cell_weight: v[16 * h..17 * h].to_vec(),
        cell_bias: v[17 * h..18 * h].to_vec(),
    }
}

/// Uploads every layer's parameters (PyTorch layout, from `layer(l, d)`) in
/// the GPU layout, into new buffers stored in `precision`.
pub(super) fn upload_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layer: impl Fn(usize, usize) -> LayerWeights<f32>,
    label: &str,
    precision: Precision,
) -> Result<Vec<GpuLayer>> {
    let (h, hout, dirs) = (cfg.hidden_size, cfg.hidden_out(), cfg.num_directions());
    let p = cfg.proj_size;
    let buffer = |name: String, len: usize| {
        ctx.create_buffer(&name, precision.bytes() * len as u64, TENSOR_USAGE)
    };
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let input_size = cfg.layer_input_size(l);
        layers.push(GpuLayer {
            w_ih: buffer(format!("{label}weight_ih_l{l}"), dirs * 4 * h * input_size)?,
            bias: buffer(format!("{label}bias_ih_hh_l{l}"), 2 * dirs * 4 * h)?,
            w_hh: buffer(format!("{label}weight_hh_l{l}"), dirs * 4 * h * hout)?,
            w_hr: if p > 0 {
                Some(buffer(format!("{label}weight_hr_l{l}"), dirs * p * h)?)
            } else {
                None
            },
            // The gains and biases stay f32 (the layer norm runs in f32 only).
            ln: if cfg.layer_norm {
                Some(ctx.create_buffer(
                    &format!("{label}layer_norm_l{l}"),
                    4 * (dirs * LN_PARAMS * h) as u64,
                    TENSOR_USAGE,
                )?)
            } else {
                None
            },
            input_size,
            precision,
        });
    }
    write_layers(ctx, cfg, layer, &layers);
    Ok(layers)
}

/// Writes every layer's parameters (PyTorch layout) into existing buffers,
/// converted to the GPU layout and the buffers' precision.
pub(super) fn write_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layer: impl Fn(usize, usize) -> LayerWeights<f32>,
    dst: &[GpuLayer],
) {
    let (h, hout, dirs) = (cfg.hidden_size, cfg.hidden_out(), cfg.num_directions());
    let zeros = vec![0.0; 4 * h];
    for (l, gl) in dst.iter().enumerate() {
        let (mut w_ih, mut b_ih, mut w_hh, mut b_hh) = (vec![], vec![], vec![], vec![]);
        let mut w_hr = vec![];
        let mut ln = vec![];
        for dir in 0..dirs {
            // A GRU's three gates go into four slots (`gru.rs`).
            let lw = match cfg.cell {
                Cell::Lstm => layer(l, dir),
                Cell::Gru => gru::pad(&layer(l, dir), h),
            };
            w_ih.extend(rows_by_unit(&lw.weight_ih, h, gl.input_size));
            w_hh.extend(rows_by_unit(&lw.weight_hh, h, hout));
            b_ih.extend(rows_by_unit(lw.bias_ih.as_deref().unwrap_or(&zeros), h, 1));
            b_hh.extend(rows_by_unit(lw.bias_hh.as_deref().unwrap_or(&zeros), h, 1));
            // W_hr keeps PyTorch's [P, H] layout (zeros where a caller
            // passes none, as for gradient buffers).
            if gl.w_hr.is_some() {
                match &lw.weight_hr {
                    Some(w) => w_hr.extend_from_slice(w),
                    None => w_hr.extend(std::iter::repeat_n(0.0, cfg.proj_size * h)),
                }
            }
            if gl.ln.is_some() {
                ln.extend(ln_to_gpu(lw.layer_norm.as_ref(), h));
            }
        }
        let mut bias = b_ih;
        bias.extend(b_hh);
        let mut writes = vec![(&gl.w_ih, w_ih), (&gl.bias, bias), (&gl.w_hh, w_hh)];
        if let Some(buf) = &gl.w_hr {
            writes.push((buf, w_hr));
        }
        for (buf, data) in writes {
            ctx.queue()
                .write_buffer(buf, 0, &to_bytes(&data, gl.precision));
        }
        if let Some(buf) = &gl.ln {
            ctx.queue().write_buffer(buf, 0, bytemuck::cast_slice(&ln));
        }
    }
}

/// Reads layers back and converts them to f32 in PyTorch's layout.
pub(super) fn download_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layers: &[GpuLayer],
) -> Result<LstmWeights<f32>> {
    crate::runtime::block_on("download_layers", download_layers_async(ctx, cfg, layers))
}

/// [`download_layers`], awaiting the GPU.
pub(super) async fn download_layers_async(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layers: &[GpuLayer],
) -> Result<LstmWeights<f32>> {
    let (h, hout, dirs) = (cfg.hidden_size, cfg.hidden_out(), cfg.num_directions());
    let p = cfg.proj_size;
    let mut out = LstmWeights::zeros(cfg)?;
    for (l, gl) in layers.iter().enumerate() {
        let mut lens = vec![
            dirs * 4 * h * gl.input_size,
            2 * dirs * 4 * h,
            dirs * 4 * h * hout,
        ];
        let mut bufs = vec![&gl.w_ih, &gl.bias, &gl.w_hh];
        if let Some(w_hr) = &gl.w_hr {
            lens.push(dirs * p * h);
            bufs.push(w_hr);
        }
        let with_ln = gl.ln.is_some();
        if let Some(ln) = &gl.ln {
            bufs.push(ln);
        }
        let mut raw = read_buffers_async(ctx, &bufs).await?;
        let ln: Option<Vec<f32>> = with_ln.then(|| {
            let bytes = raw.pop().expect("the layer norm's buffer");
            bytemuck::cast_slice::<u8, f32>(&bytes[..4 * dirs * LN_PARAMS * h]).to_vec()
        });
        let host: Vec<Vec<f32>> = raw
            .iter()
            .zip(lens)
            .map(|(bytes, len)| from_bytes(bytes, len, gl.precision))
            .collect();
        for dir in 0..dirs {
            let part = |t: &[f32], n: usize| t[dir * n..(dir + 1) * n].to_vec();
            // b_ih is the first half of the bias buffer, b_hh the second.
            let (b_ih, b_hh) = host[1].split_at(dirs * 4 * h);
            let bias = |t: &[f32]| rows_by_gate(&part(t, 4 * h), h, 1);
            let lw = LayerWeights {
                weight_ih: rows_by_gate(&part(&host[0], 4 * h * gl.input_size), h, gl.input_size),
                weight_hh: rows_by_gate(&part(&host[2], 4 * h * hout), h, hout),
                bias_ih: cfg.bias.then(|| bias(b_ih)),
                bias_hh: cfg.bias.then(|| bias(b_hh)),
                weight_hr: host.get(3).map(|w| part(w, p * h)),
                layer_norm: ln
                    .as_ref()
                    .map(|v| ln_from_gpu(&v[dir * LN_PARAMS * h..(dir + 1) * LN_PARAMS * h], h)),
            };
            *out.layer_mut(l, dir) = match cfg.cell {
                Cell::Lstm => lw,
                Cell::Gru => gru::unpad(&lw, h),
            };
        }
    }
    Ok(out)
}
