//! Moving LSTM parameters between PyTorch's layout on the host and the GPU
//! layout ([`crate::gpu::layout`]) in [`GpuLayer`] buffers.

use crate::config::LstmConfig;
use crate::error::Result;
use crate::gpu::layout::{recurrent_from_gpu, recurrent_to_gpu, rows_by_gate, rows_by_unit};
use crate::gpu::tensor::{TENSOR_USAGE, read_back};
use crate::gpu::workspace::GpuLayer;
use crate::gpu::{GpuContext, GpuTensor};
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Uploads every layer's parameters (PyTorch layout, from `layer(l, d)`) in
/// the GPU layout, into new buffers.
pub(super) fn upload_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layer: impl Fn(usize, usize) -> LayerWeights<f32>,
    label: &str,
) -> Result<Vec<GpuLayer>> {
    let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
    let buffer = |name: String, len: usize| ctx.create_buffer(&name, 4 * len as u64, TENSOR_USAGE);
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let input_size = cfg.layer_input_size(l);
        layers.push(GpuLayer {
            w_ih: buffer(format!("{label}weight_ih_l{l}"), dirs * 4 * h * input_size)?,
            b_ih: buffer(format!("{label}bias_ih_l{l}"), dirs * 4 * h)?,
            w_hh: buffer(format!("{label}weight_hh_l{l}"), dirs * 4 * h * h)?,
            b_hh: buffer(format!("{label}bias_hh_l{l}"), dirs * 4 * h)?,
            input_size,
        });
    }
    write_layers(ctx, cfg, layer, &layers);
    Ok(layers)
}

/// Writes every layer's parameters (PyTorch layout) into existing buffers,
/// converted to the GPU layout.
pub(super) fn write_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layer: impl Fn(usize, usize) -> LayerWeights<f32>,
    dst: &[GpuLayer],
) {
    let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
    let zeros = vec![0.0; 4 * h];
    for (l, gl) in dst.iter().enumerate() {
        let (mut w_ih, mut b_ih, mut w_hh, mut b_hh) = (vec![], vec![], vec![], vec![]);
        for dir in 0..dirs {
            let lw = layer(l, dir);
            w_ih.extend(rows_by_unit(&lw.weight_ih, h, gl.input_size));
            w_hh.extend(recurrent_to_gpu(&lw.weight_hh, h, h));
            b_ih.extend(rows_by_unit(lw.bias_ih.as_deref().unwrap_or(&zeros), h, 1));
            b_hh.extend(rows_by_unit(lw.bias_hh.as_deref().unwrap_or(&zeros), h, 1));
        }
        for (buf, data) in [
            (&gl.w_ih, w_ih),
            (&gl.b_ih, b_ih),
            (&gl.w_hh, w_hh),
            (&gl.b_hh, b_hh),
        ] {
            ctx.queue()
                .write_buffer(buf, 0, bytemuck::cast_slice(&data));
        }
    }
}

/// Reads layers back and converts them to PyTorch's layout.
pub(super) fn download_layers(
    ctx: &GpuContext,
    cfg: &LstmConfig,
    layers: &[GpuLayer],
) -> Result<LstmWeights<f32>> {
    let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
    let mut out = LstmWeights::zeros(cfg)?;
    for (l, gl) in layers.iter().enumerate() {
        let tensors: Vec<GpuTensor> = [
            (&gl.w_ih, vec![dirs * 4 * h, gl.input_size]),
            (&gl.b_ih, vec![dirs * 4 * h]),
            (&gl.w_hh, vec![dirs * h * h * 4]),
            (&gl.b_hh, vec![dirs * 4 * h]),
        ]
        .into_iter()
        .map(|(b, shape)| GpuTensor::from_buffer(b.clone(), shape))
        .collect();
        let host = read_back(ctx, &tensors.iter().collect::<Vec<_>>())?;
        for dir in 0..dirs {
            let part = |t: &Tensor<f32>, n: usize| t.data()[dir * n..(dir + 1) * n].to_vec();
            let bias = |t: &Tensor<f32>| rows_by_gate(&part(t, 4 * h), h, 1);
            *out.layer_mut(l, dir) = LayerWeights {
                weight_ih: rows_by_gate(&part(&host[0], 4 * h * gl.input_size), h, gl.input_size),
                weight_hh: recurrent_from_gpu(&part(&host[2], 4 * h * h), h, h),
                bias_ih: cfg.bias.then(|| bias(&host[1])),
                bias_hh: cfg.bias.then(|| bias(&host[3])),
                weight_hr: None,
            };
        }
    }
    Ok(out)
}
