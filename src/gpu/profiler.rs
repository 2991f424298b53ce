//! Kernel time from GPU timestamp queries (adapters with `TIMESTAMP_QUERY`),
//! split into the phases of a pass: the input-projection GEMMs, the forward
//! step kernels, the backward step kernels and the backward GEMMs.

use std::cell::RefCell;

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::tensor::map_and_read;

/// The phases a pass is timed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    InputProjection,
    Steps,
    BackwardSteps,
    BackwardGemms,
}

/// GPU time per phase of the last profiled submit, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelTimes {
    /// The input-projection GEMMs, G = X · W_ihᵀ + b_ih + b_hh (not LSTMP's hidden
    /// projection `W_hr`, which is timed with the steps).
    pub projection_ms: f64,
    /// The forward step kernels.
    pub steps_ms: f64,
    /// The backward step kernels.
    pub backward_steps_ms: f64,
    /// The backward GEMMs (weight and input gradients).
    pub backward_gemms_ms: f64,
}

impl KernelTimes {
    /// The sum of the phases.
    pub fn total_ms(&self) -> f64 {
        self.projection_ms + self.steps_ms + self.backward_steps_ms + self.backward_gemms_ms
    }
}

/// A query set with room for one submit's passes, and where it resolves to.
pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    capacity: u32,
    /// The phase of each begin/end pair written in the current submit.
    spans: RefCell<Vec<Phase>>,
}

impl Profiler {
    /// `None` when the device lacks `TIMESTAMP_QUERY`. `passes` is the most
    /// timed passes one submit holds.
    pub fn new(ctx: &GpuContext, passes: u32) -> Result<Option<Self>> {
        if !ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Ok(None);
        }
        let capacity = 2 * passes;
        let queries = ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let bytes = 8 * capacity as u64;
        let resolve = ctx.create_buffer(
            "timestamps (resolve)",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let readback = ctx.create_buffer(
            "timestamps (read-back)",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(Some(Profiler {
            queries,
            resolve,
            readback,
            capacity,
            spans: RefCell::new(Vec::new()),
        }))
    }

    /// Timestamp writes for the next pass, counted towards `phase`.
    pub fn writes(&self, phase: Phase) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let mut spans = self.spans.borrow_mut();
        let at = 2 * spans.len() as u32;
        if at + 2 > self.capacity {
            return None;
        }
        spans.push(phase);
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(at),
            end_of_pass_write_index: Some(at + 1),
        })
    }

    /// Encodes the copy of this submit's timestamps to the read-back buffer.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = 2 * self.spans.borrow().len() as u32;
        if n > 0 {
            enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 8 * n as u64);
        }
    }

    /// After the submit: the time per phase. Starts the next submit afresh.
    pub fn read(&self, ctx: &GpuContext) -> Result<KernelTimes> {
        let spans = std::mem::take(&mut *self.spans.borrow_mut());
        let mut times = KernelTimes::default();
        if spans.is_empty() {
            return Ok(times);
        }
        // Timestamps are u64 ticks: read them as pairs of u32 words.
        let words = map_and_read(ctx, &self.readback, &[&[4 * spans.len()]])?;
        let bits: Vec<u32> = words[0].data().iter().map(|w| w.to_bits()).collect();
        let tick = |i: usize| bits[2 * i] as u64 | (bits[2 * i + 1] as u64) << 32;
        let period_ns = ctx.queue().get_timestamp_period() as f64;
        for (k, phase) in spans.iter().enumerate() {
            let ms = tick(2 * k + 1).saturating_sub(tick(2 * k)) as f64 * period_ns / 1e6;
            match phase {
                Phase::InputProjection => times.projection_ms += ms,
                Phase::Steps => times.steps_ms += ms,
                Phase::BackwardSteps => times.backward_steps_ms += ms,
                Phase::BackwardGemms => times.backward_gemms_ms += ms,
            }
        }
        Ok(times)
    }
}
