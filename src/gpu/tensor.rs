//! `GpuTensor`: an f32 storage buffer that knows its shape, with upload and
//! read-back.

use crate::error::{LstmError, Result};
use crate::gpu::{GpuContext, Precision};
use crate::tensor::Tensor;

/// Usage flags of every tensor buffer: bound as storage, copied both ways.
pub(crate) const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A row-major f32 tensor in GPU memory.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub(crate) buffer: wgpu::Buffer,
    shape: Vec<usize>,
}

impl GpuTensor {
    /// An uninitialised tensor of `shape`.
    pub fn empty(ctx: &GpuContext, label: &str, shape: &[usize]) -> Result<Self> {
        let bytes = byte_size(label, shape)?;
        Ok(GpuTensor {
            buffer: ctx.create_buffer(label, bytes, TENSOR_USAGE)?,
            shape: shape.to_vec(),
        })
    }

    /// Wraps an existing buffer holding at least `shape`'s elements.
    pub(crate) fn from_buffer(buffer: wgpu::Buffer, shape: Vec<usize>) -> Self {
        GpuTensor { buffer, shape }
    }

    /// Uploads a host tensor into a new buffer.
    pub fn upload(ctx: &GpuContext, label: &str, host: &Tensor<f32>) -> Result<Self> {
        let t = Self::empty(ctx, label, host.shape())?;
        t.write(ctx, host)?;
        Ok(t)
    }

    /// Overwrites the contents with a host tensor of the same shape.
    pub fn write(&self, ctx: &GpuContext, host: &Tensor<f32>) -> Result<()> {
        if host.shape() != self.shape {
            return Err(LstmError::shape(
                self.buffer_label(),
                &self.shape,
                host.shape(),
            ));
        }
        if !host.data().is_empty() {
            ctx.queue()
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(host.data()));
        }
        Ok(())
    }

    /// The shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements (the product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes (the buffer may be padded beyond it).
    pub fn byte_len(&self) -> u64 {
        4 * self.len() as u64
    }

    /// Reads the tensor back to the host (one submit).
    pub fn to_host(&self, ctx: &GpuContext) -> Result<Tensor<f32>> {
        crate::runtime::block_on("GpuTensor::to_host", self.to_host_async(ctx))
    }

    /// [`to_host`](Self::to_host), awaiting the GPU (what a browser needs).
    pub async fn to_host_async(&self, ctx: &GpuContext) -> Result<Tensor<f32>> {
        let mut out = read_back_async(ctx, &[self]).await?;
        Ok(out.remove(0))
    }

    fn buffer_label(&self) -> String {
        format!("gpu tensor {:?}", self.shape)
    }
}

/// Bytes for an f32 tensor of `shape`, checked for overflow.
pub(crate) fn byte_size(label: &str, shape: &[usize]) -> Result<u64> {
    byte_size_in(label, shape, Precision::F32)
}

/// Bytes for a tensor of `shape` stored in `precision`, checked for overflow.
pub(crate) fn byte_size_in(label: &str, shape: &[usize], precision: Precision) -> Result<u64> {
    shape
        .iter()
        .try_fold(precision.bytes(), |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| LstmError::value(label, format!("shape {shape:?} overflows")))
}

/// Reads several tensors back through one staging buffer: copy, submit,
/// `map_async`, wait, read, unmap, in that order.
pub fn read_back(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Tensor<f32>>> {
    crate::runtime::block_on("read_back", read_back_async(ctx, tensors))
}

/// [`read_back`], awaiting the GPU (what a browser needs).
pub async fn read_back_async(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Tensor<f32>>> {
    let parts: Vec<_> = tensors.iter().map(|t| (&t.buffer, t.byte_len())).collect();
    let staging = stage(ctx, &parts)?;
    let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
    map_and_read_async(ctx, &staging, &shapes).await
}

/// Copies the first `bytes` of each buffer, end to end, into a new staging
/// buffer in one submit; [`map_and_read`] then waits for it.
fn stage(ctx: &GpuContext, parts: &[(&wgpu::Buffer, u64)]) -> Result<wgpu::Buffer> {
    let total: u64 = parts.iter().map(|&(_, n)| n).sum();
    let staging = ctx.create_buffer(
        "read-back staging",
        total,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )?;
    let mut encoder = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("read back"),
        });
    let mut offset = 0;
    for &(buffer, n) in parts {
        if n > 0 {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, offset, n);
        }
        offset += n;
    }
    ctx.submit(encoder)?;
    Ok(staging)
}

/// Reads whole buffers back as bytes (one submit), for buffers that are not
/// f32 tensors (f16 weights).
pub(crate) fn read_buffers(ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> Result<Vec<Vec<u8>>> {
    crate::runtime::block_on("read_buffers", read_buffers_async(ctx, buffers))
}

/// [`read_buffers`], awaiting the GPU.
pub(crate) async fn read_buffers_async(
    ctx: &GpuContext,
    buffers: &[&wgpu::Buffer],
) -> Result<Vec<Vec<u8>>> {
    let parts: Vec<_> = buffers.iter().map(|&b| (b, b.size())).collect();
    let staging = stage(ctx, &parts)?;
    let total: u64 = parts.iter().map(|&(_, n)| n).sum();
    // Buffer sizes are multiples of 4, so the bytes map as f32 words.
    let words = map_and_read_async(ctx, &staging, &[&[(total / 4) as usize]]).await?;
    let bytes: &[u8] = bytemuck::cast_slice(words[0].data());
    let mut at = 0;
    Ok(buffers
        .iter()
        .map(|b| {
            let n = b.size() as usize;
            let v = bytes[at..at + n].to_vec();
            at += n;
            v
        })
        .collect())
}

/// Unmaps the buffer it holds when dropped: a mapping still pending is
/// cancelled, a completed one released.
struct CancelMapOnDrop<'a>(Option<&'a wgpu::Buffer>);

impl Drop for CancelMapOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(buffer) = self.0 {
            buffer.unmap();
        }
    }
}

/// [`map_and_read_async`], blocking (natively; see [`crate::runtime`]).
pub(crate) fn map_and_read(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    shapes: &[&[usize]],
) -> Result<Vec<Tensor<f32>>> {
    crate::runtime::block_on("map_and_read", map_and_read_async(ctx, staging, shapes))
}

/// Maps `staging` (filled by a submit already made), waiting once for the
/// GPU, and splits it into tensors of the given shapes, laid end to end.
///
/// Natively the wait is `device.poll`, after which the mapping has
/// completed; in a browser the poll returns at once and the mapping
/// completes when the event loop runs, which the `await` yields to.
pub(crate) async fn map_and_read_async(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    shapes: &[&[usize]],
) -> Result<Vec<Tensor<f32>>> {
    let total: u64 = shapes
        .iter()
        .map(|s| 4 * s.iter().product::<usize>() as u64)
        .sum();
    if total == 0 {
        return shapes
            .iter()
            .map(|s| Tensor::new(s.to_vec(), Vec::new()))
            .collect();
    }
    let slice = staging.slice(0..total);
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = sender.send(r);
    });
    // Should this future be dropped before the mapping completes (a
    // browser's blocking call gives up at once), the guard cancels the
    // mapping, so that the buffer can be mapped again by the next read.
    // Once mapped, the guard is the one place that unmaps it, on every path.
    let mut mapping = CancelMapOnDrop(Some(staging));
    ctx.wait(None)?;
    match receiver.receive().await {
        Some(Ok(())) => {}
        // A mapping that failed left the buffer unmapped: nothing to undo.
        Some(Err(e)) => {
            mapping.0 = None;
            return Err(LstmError::Gpu(format!("mapping the read-back buffer: {e}")));
        }
        None => {
            mapping.0 = None;
            return Err(LstmError::Gpu("the read-back mapping was dropped".into()));
        }
    }
    let out = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| LstmError::Gpu(format!("reading the mapped buffer: {e}")))?;
        let data: &[f32] = bytemuck::cast_slice(&view);
        let mut at = 0;
        shapes
            .iter()
            .map(|s| {
                let n: usize = s.iter().product();
                let t = Tensor::new(s.to_vec(), data[at..at + n].to_vec());
                at += n;
                t
            })
            .collect::<Result<Vec<_>>>()
    };
    drop(mapping);
    ctx.check()?;
    out
}
