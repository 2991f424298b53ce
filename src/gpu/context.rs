//! `GpuContext`: the adapter, device and queue, built once and shared by
//! every GPU object, with typed errors and counters of the work it records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{LstmError, Result};
use crate::gpu::kernels::{GemmLayout, GemmParams, GemmTile, GemmTypes, StepConfig};
use crate::gpu::tune::{
    TuneMode, TuneReport, TuneSource, Tuner, cache, gemm as tune_gemm, step as tune_step,
};

/// What a context has done since it was made; tests and the benchmark read it
/// to check the structural promises (one submit per pass, T + O(1)
/// dispatches, no allocation on a repeated call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queue submits.
    pub submits: u64,
    /// Compute dispatches.
    pub dispatches: u64,
    /// Pipelines created.
    pub pipelines: u64,
    /// Bind groups created.
    pub bind_groups: u64,
    /// Buffers created.
    pub buffers: u64,
    /// Times the host waited for the GPU (a blocking `poll`).
    pub host_waits: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, rhs: Counters) -> Counters {
        Counters {
            submits: self.submits - rhs.submits,
            dispatches: self.dispatches - rhs.dispatches,
            pipelines: self.pipelines - rhs.pipelines,
            bind_groups: self.bind_groups - rhs.bind_groups,
            buffers: self.buffers - rhs.buffers,
            host_waits: self.host_waits - rhs.host_waits,
        }
    }
}

#[derive(Default)]
struct AtomicCounters {
    submits: AtomicU64,
    dispatches: AtomicU64,
    pipelines: AtomicU64,
    bind_groups: AtomicU64,
    buffers: AtomicU64,
    host_waits: AtomicU64,
}

/// One adapter as `wgpu-lstm info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Name, vendor, device type, driver and backend.
    pub info: wgpu::AdapterInfo,
    /// The wgpu features it offers (e.g. `SHADER_F16`, `TIMESTAMP_QUERY`).
    pub features: wgpu::Features,
    /// Its limits (buffer sizes, workgroup sizes).
    pub limits: wgpu::Limits,
}

struct Inner {
    adapter_info: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    counters: AtomicCounters,
    /// The first error wgpu reported outside an error scope, or a device loss.
    error: Arc<Mutex<Option<LstmError>>>,
    /// Submits not yet finished, oldest first (see [`MAX_IN_FLIGHT`]).
    in_flight: Mutex<std::collections::VecDeque<(wgpu::SubmissionIndex, Arc<AtomicBool>)>>,
    /// The autotuner's choices on this device.
    tuner: Mutex<Tuner>,
}

/// Submits the host may have queued before it waits for the oldest: the
/// host runs ahead of the GPU by at most this many calls, so that a loop
/// that never reads a result does not queue work (and the memory its
/// uploads stage) without bound.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

/// A wgpu device and queue, cheap to clone (all clones share one device).
#[derive(Clone)]
pub struct GpuContext {
    inner: Arc<Inner>,
}

fn instance() -> wgpu::Instance {
    // The primary backends (Vulkan, Metal, DX12, WebGPU) unless WGPU_BACKEND
    // names others (e.g. `gl`); the other WGPU_* instance variables apply too.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc.with_env())
}

/// True when the environment says a missing GPU is a failure, not a skip:
/// `CI` or `WGPU_LSTM_REQUIRE_GPU` set to anything but empty, `0` or `false`.
pub fn gpu_required_by_env() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI") || on("WGPU_LSTM_REQUIRE_GPU")
}

/// Every adapter wgpu can see, for `wgpu-lstm info`.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters()
        .into_iter()
        .map(|a| AdapterSummary {
            info: a.get_info(),
            features: a.features(),
            limits: a.limits(),
        })
        .collect()
}

/// Every adapter wgpu can see, to open with [`GpuContext::from_adapter`]
/// (`wgpu-lstm doctor` checks each).
///
/// In a browser, where this cannot wait, none (`Device::gpu_async` awaits
/// the browser's adapter).
pub fn adapters() -> Vec<wgpu::Adapter> {
    crate::runtime::block_on("adapters", async {
        Ok(instance().enumerate_adapters(wgpu::Backends::all()).await)
    })
    .unwrap_or_default()
}

/// The adapter [`GpuContext::new`] opens: the one `WGPU_ADAPTER_NAME` names,
/// or wgpu's choice preferring a high-performance GPU.
pub(crate) async fn select_adapter_async() -> Result<wgpu::Adapter> {
    let instance = instance();
    let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
        Ok(wanted) => {
            let wanted = wanted.to_lowercase();
            let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
                .ok_or_else(|| LstmError::NoAdapter {
                    detail: format!(
                        " whose name contains WGPU_ADAPTER_NAME={wanted:?} (adapters: {names:?})"
                    ),
                })?
        }
        Err(_) => instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env()
                    .unwrap_or(wgpu::PowerPreference::HighPerformance),
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| LstmError::NoAdapter {
                detail: format!(" ({e})"),
            })?,
    };
    Ok(adapter)
}

/// Whether an adapter runs on the CPU (lavapipe, llvmpipe, WARP,
/// SwiftShader): a GPU in name only, far slower than the CPU engine.
pub(crate) fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "swiftshader",
            "microsoft basic render",
        ]
        .iter()
        .any(|s| name.contains(s))
}

/// What the tuner's choices are keyed by: the adapter, its driver and
/// backend, so a driver update measures again.
fn tuning_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} [{:04x}:{:04x}] {:?} {} {}",
        info.name, info.vendor, info.device, info.backend, info.driver, info.driver_info
    )
}

/// The adapter [`Device::auto`](crate::Device::auto) takes: with `named`
/// (`WGPU_ADAPTER_NAME` set) the one named, whatever it is; otherwise the
/// first hardware adapter, a discrete GPU before an integrated one. `None`
/// when there is no such adapter.
pub(crate) async fn hardware_adapter_async(named: bool) -> Option<wgpu::Adapter> {
    if named {
        return select_adapter_async().await.ok();
    }
    let rank = |t: wgpu::DeviceType| match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        _ => 2,
    };
    instance()
        .enumerate_adapters(wgpu::Backends::all())
        .await
        .into_iter()
        .filter(|a| !is_software(&a.get_info()))
        .min_by_key(|a| rank(a.get_info().device_type))
}

impl GpuContext {
    /// Picks an adapter and opens a device on it.
    ///
    /// With `WGPU_ADAPTER_NAME` set, the first adapter whose name contains it
    /// (case-insensitive) is used, or [`LstmError::NoAdapter`] returned if none
    /// does. Otherwise wgpu picks, preferring a high-performance GPU
    /// (`WGPU_POWER_PREF` overrides). `WGPU_BACKEND` restricts the backends.
    ///
    /// The device gets the adapter's own storage-buffer and buffer-size limits
    /// rather than WebGPU's small defaults, so large sequences fit, unless
    /// `WGPU_LSTM_LIMITS=webgpu` (see [`from_adapter`](Self::from_adapter)).
    pub fn new() -> Result<Self> {
        crate::runtime::block_on("GpuContext::new", Self::new_async())
    }

    /// [`new`](Self::new), awaiting the adapter and the device instead of
    /// blocking: the form a browser needs.
    pub async fn new_async() -> Result<Self> {
        Self::from_adapter_async(&select_adapter_async().await?).await
    }

    /// Opens a device on a specific adapter.
    ///
    /// With `WGPU_LSTM_LIMITS=webgpu` the device gets exactly WebGPU's
    /// default limits (`wgpu::Limits::default()`: 8 storage buffers per
    /// shader stage, 16 KiB of workgroup memory, 256 invocations per
    /// workgroup, 128 MiB per binding, 256 MiB per buffer), as a browser
    /// would give, so that what runs here runs there.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        crate::runtime::block_on(
            "GpuContext::from_adapter",
            Self::from_adapter_async(adapter),
        )
    }

    /// [`from_adapter`](Self::from_adapter), awaiting the device instead of
    /// blocking.
    pub async fn from_adapter_async(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let available = adapter.limits();
        let webgpu = match std::env::var("WGPU_LSTM_LIMITS") {
            Err(_) => false,
            Ok(v) if v.is_empty() || v == "adapter" => false,
            Ok(v) if v == "webgpu" => true,
            Ok(v) => {
                return Err(LstmError::value(
                    "WGPU_LSTM_LIMITS",
                    format!("{v:?}: use `webgpu` (WebGPU's default limits) or `adapter`"),
                ));
            }
        };
        let required_limits = if webgpu {
            wgpu::Limits::default()
        } else {
            adapter_limits(&available)
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-lstm device"),
                // Timestamps are only for the benchmark's kernel times, f16 only
                // for `Precision::F16`; ask for them where the adapter has them.
                required_features: adapter.features()
                    & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16),
                required_limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| LstmError::DeviceRequest {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;

        let tune_mode = TuneMode::from_env()?;
        let tune_key = tuning_key(&info);
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert(LstmError::Gpu(e.to_string()));
        }));
        let slot = error.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert(LstmError::DeviceLost(format!("{reason:?}: {message}")));
        });
        // In a browser (wasm32 without threads) wgpu's handles are neither
        // Send nor Sync, and nothing is shared between threads.
        #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
        Ok(GpuContext {
            inner: Arc::new(Inner {
                adapter_info: info,
                device,
                queue,
                counters: AtomicCounters::default(),
                error,
                in_flight: Mutex::new(std::collections::VecDeque::new()),
                tuner: Mutex::new(Tuner::new(tune_mode, tune_key, cache::default_path())),
            }),
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The adapter's name, vendor, device type, driver and backend.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.adapter_info
    }

    /// The features the device was opened with.
    pub fn features(&self) -> wgpu::Features {
        self.inner.device.features()
    }

    /// Checks that this device can run `precision` (f16 needs `SHADER_F16`).
    pub fn check_precision(&self, precision: crate::gpu::Precision) -> Result<()> {
        crate::gpu::check_precision(precision, self.features(), &self.inner.adapter_info.name)
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }

    /// How the autotuner runs on this device (`WGPU_LSTM_TUNE`).
    pub fn tune_mode(&self) -> TuneMode {
        self.tuner().mode()
    }

    /// What the autotuner has chosen on this device so far, per kernel
    /// family and shape class, with the candidates' times and any excluded.
    pub fn tuning(&self) -> Vec<TuneReport> {
        self.tuner().reports()
    }

    fn tuner(&self) -> std::sync::MutexGuard<'_, Tuner> {
        self.inner.tuner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The step configuration for a layer of `hidden` units (`h_out` wide)
    /// at batch size `batch`: the tuner's choice for its class, measured on
    /// first use (see [`crate::gpu::tune`]), or the built-in default with
    /// `WGPU_LSTM_TUNE=off`.
    pub(crate) fn step_config_for(
        &self,
        precision: crate::gpu::Precision,
        hidden: usize,
        h_out: usize,
        batch: usize,
    ) -> Result<StepConfig> {
        let max = self.limits().max_compute_invocations_per_workgroup;
        self.tuned(
            tune_step::FAMILY,
            tune_step::class(precision, hidden, h_out, batch),
            StepConfig::default_for(h_out),
            tune_step::name,
            |s| tune_step::parse(s).filter(|c| c.validate(max).is_ok()),
            || tune_step::tune_step(self, precision, hidden, h_out, batch),
        )
    }

    /// The GEMM tile for a product of `params`' size class, in `types` and
    /// `layout`: the tuner's choice, measured on first use, or the default
    /// 64 × 64 tile with `WGPU_LSTM_TUNE=off`.
    pub(crate) fn gemm_tile_for(
        &self,
        types: GemmTypes,
        layout: GemmLayout,
        params: &GemmParams,
    ) -> Result<GemmTile> {
        self.tuned(
            tune_gemm::FAMILY,
            tune_gemm::class(types, layout, params),
            GemmTile::T64,
            tune_gemm::name,
            tune_gemm::parse,
            || tune_gemm::tune_gemm(self, types, layout, params),
        )
    }

    /// How many parallel slices of K a product of `params`' split class runs
    /// in with `tile`: the tuner's choice, measured on first use, or 1 (no
    /// split) with `WGPU_LSTM_TUNE=off`.
    pub(crate) fn gemm_splits_for(
        &self,
        types: GemmTypes,
        layout: GemmLayout,
        tile: GemmTile,
        params: &GemmParams,
    ) -> Result<u32> {
        self.tuned(
            tune_gemm::SPLIT_FAMILY,
            tune_gemm::split_class(types, layout, params),
            1,
            |s| s.to_string(),
            tune_gemm::parse_splits,
            || tune_gemm::tune_splits(self, types, layout, tile, params),
        )
    }

    /// The tuner's choice for (`family`, `class`): the default when tuning
    /// is off, else the choice made or cached, else `measure`'s (made
    /// without the tuner's lock: it runs kernels on this context, and its
    /// work is counted in its report, not in the context's counters).
    fn tuned<C: Copy>(
        &self,
        family: &str,
        class: String,
        default: C,
        name: impl Fn(C) -> String,
        parse: impl Fn(&str) -> Option<C>,
        measure: impl FnOnce() -> Result<(C, TuneReport)>,
    ) -> Result<C> {
        {
            let mut tuner = self.tuner();
            if tuner.mode() == TuneMode::Off {
                if tuner.lookup(family, &class).is_none() {
                    tuner.record(TuneReport {
                        family: family.to_string(),
                        class,
                        chosen: name(default),
                        source: TuneSource::Default,
                        times_ms: Vec::new(),
                        timer: "",
                        excluded: Vec::new(),
                        work: Counters::default(),
                        elapsed_ms: 0.0,
                    });
                }
                return Ok(default);
            }
            if let Some(c) = tuner.lookup(family, &class).and_then(|s| parse(&s)) {
                return Ok(c);
            }
        }
        let (before, start) = (self.counters(), std::time::Instant::now());
        let result = measure();
        let work = self.counters() - before;
        self.uncount(work);
        let (config, mut report) = result?;
        report.work = work;
        report.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        self.tuner().record(report);
        Ok(config)
    }

    /// The step configuration already chosen for this class, if any (no
    /// measurement).
    pub(crate) fn known_step_config(
        &self,
        precision: crate::gpu::Precision,
        hidden: usize,
        h_out: usize,
        batch: usize,
    ) -> Option<StepConfig> {
        let class = tune_step::class(precision, hidden, h_out, batch);
        self.tuner()
            .lookup(tune_step::FAMILY, &class)
            .and_then(|s| tune_step::parse(&s))
    }

    /// Takes `work` back out of the counters (the tuner's measurements).
    fn uncount(&self, work: Counters) {
        let c = &self.inner.counters;
        c.submits.fetch_sub(work.submits, Ordering::Relaxed);
        c.dispatches.fetch_sub(work.dispatches, Ordering::Relaxed);
        c.pipelines.fetch_sub(work.pipelines, Ordering::Relaxed);
        c.bind_groups.fetch_sub(work.bind_groups, Ordering::Relaxed);
        c.buffers.fetch_sub(work.buffers, Ordering::Relaxed);
        c.host_waits.fetch_sub(work.host_waits, Ordering::Relaxed);
    }

    /// A snapshot of the work recorded so far, apart from the autotuner's
    /// measurements (each [`TuneReport`] counts its own).
    pub fn counters(&self) -> Counters {
        let c = &self.inner.counters;
        Counters {
            submits: c.submits.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            pipelines: c.pipelines.load(Ordering::Relaxed),
            bind_groups: c.bind_groups.load(Ordering::Relaxed),
            buffers: c.buffers.load(Ordering::Relaxed),
            host_waits: c.host_waits.load(Ordering::Relaxed),
        }
    }

    /// Blocks until the GPU has finished everything submitted so far (one
    /// host wait), and reports any error it raised: the counterpart of
    /// `torch.cuda.synchronize()`. Submitting calls return without waiting,
    /// so a timing of GPU work ends with this.
    pub fn synchronize(&self) -> Result<()> {
        crate::runtime::block_on("GpuContext::synchronize", self.synchronize_async())
    }

    /// [`synchronize`](Self::synchronize), awaiting the GPU instead of
    /// blocking: in a browser, until the queue reports its submitted work
    /// done; natively the wait itself is the same host wait.
    pub async fn synchronize_async(&self) -> Result<()> {
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        self.inner.queue.on_submitted_work_done(move || {
            let _ = sender.send(());
        });
        self.wait(None)?;
        // Natively the wait above returned once the work was done; a
        // browser's poll returns at once and the queue's promise says when.
        if cfg!(target_arch = "wasm32") {
            receiver.receive().await;
        }
        self.check()
    }

    /// Returns (and clears) the first error wgpu reported, if any.
    pub fn check(&self) -> Result<()> {
        let mut slot = self.inner.error.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---- Recording helpers: every GPU object the crate makes goes through these. ----

    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let limits = self.limits();
        // Buffers are whole multiples of 16 bytes (and at least 16: wgpu
        // rejects zero-sized bindings), so that any of them can be read as
        // vec4s (the tiled GEMM's aligned loads).
        let size = size.max(16).next_multiple_of(16);
        if size > limits.max_buffer_size {
            return Err(LstmError::DeviceLimit {
                what: format!("buffer `{label}`"),
                limit: "max_buffer_size",
                requested: size,
                available: limits.max_buffer_size,
            });
        }
        if usage.contains(wgpu::BufferUsages::STORAGE)
            && size > limits.max_storage_buffer_binding_size
        {
            return Err(LstmError::DeviceLimit {
                what: format!("storage buffer `{label}`"),
                limit: "max_storage_buffer_binding_size",
                requested: size,
                available: limits.max_storage_buffer_binding_size,
            });
        }
        self.inner.counters.buffers.fetch_add(1, Ordering::Relaxed);
        Ok(self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        }))
    }

    pub(crate) fn create_bind_group(
        &self,
        desc: &wgpu::BindGroupDescriptor<'_>,
    ) -> wgpu::BindGroup {
        self.inner
            .counters
            .bind_groups
            .fetch_add(1, Ordering::Relaxed);
        self.inner.device.create_bind_group(desc)
    }

    pub(crate) fn create_compute_pipeline(
        &self,
        desc: &wgpu::ComputePipelineDescriptor<'_>,
    ) -> wgpu::ComputePipeline {
        self.inner
            .counters
            .pipelines
            .fetch_add(1, Ordering::Relaxed);
        self.inner.device.create_compute_pipeline(desc)
    }

    pub(crate) fn count_dispatch(&self) {
        self.inner
            .counters
            .dispatches
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Submits one command buffer and returns at once, surfacing any error
    /// wgpu reported while recording it. The host may encode the next
    /// submit while the GPU runs this one; queue order keeps them in order.
    ///
    /// At most [`MAX_IN_FLIGHT`] submits are left unfinished: past that, the
    /// call waits for the oldest (a host wait, counted), which only happens
    /// when the host runs that far ahead of the GPU. A non-blocking poll
    /// after each submit lets wgpu reclaim the resources of finished work.
    pub(crate) fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        self.inner.counters.submits.fetch_add(1, Ordering::Relaxed);
        let index = self.inner.queue.submit([encoder.finish()]);
        // Called once the submit just made has finished.
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        self.inner
            .queue
            .on_submitted_work_done(move || flag.store(true, Ordering::Release));
        let _ = self.inner.device.poll(wgpu::PollType::Poll);
        let oldest = {
            let mut q = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            q.retain(|(_, done)| !done.load(Ordering::Acquire));
            q.push_back((index.clone(), done));
            (q.len() > MAX_IN_FLIGHT)
                .then(|| q.pop_front().map(|(i, _)| i))
                .flatten()
        };
        if let Some(oldest) = oldest {
            self.wait(Some(oldest))?;
        }
        self.check()?;
        Ok(index)
    }

    /// Blocks until the GPU has finished `index` (every submit when `None`):
    /// one host wait.
    pub(crate) fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.inner
            .counters
            .host_waits
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| LstmError::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Submits one command buffer and waits for the device to finish it,
    /// surfacing any error wgpu reported while recording or running it.
    pub(crate) fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        let index = self.submit(encoder)?;
        self.wait(Some(index))
    }
}

/// The limits a device asks for by default: the adapter's own storage-buffer,
/// buffer-size and workgroup-memory limits rather than WebGPU's small
/// defaults, so that large sequences fit.
fn adapter_limits(available: &wgpu::Limits) -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffer_binding_size: available.max_storage_buffer_binding_size,
        max_buffer_size: available.max_buffer_size,
        max_storage_buffers_per_shader_stage: available
            .max_storage_buffers_per_shader_stage
            .min(16),
        max_compute_workgroup_storage_size: available.max_compute_workgroup_storage_size,
        ..wgpu::Limits::downlevel_defaults()
            .using_resolution(available.clone())
            .using_alignment(available.clone())
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
