//! How [`GpuLstm`]'s step kernels launch: the configuration that splits their
//! work, what one step dispatch launches, and when a stack runs as a
//! wavefront.

use super::GpuLstm;
use crate::config::LstmConfig;
use crate::error::Result;
use crate::gpu::kernels::StepConfig;

/// What one dispatch of the (layer-by-layer) forward step kernel launches,
/// from its launch configuration (a wavefront dispatch launches this per
/// layer, and its layers ≥ 1 also read W_ih): how much of a GPU it can occupy and how many bytes of
/// W_hh it reads (each batch block of workgroups reads all of it once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLaunch {
    /// Workgroups in one step dispatch (both directions).
    pub workgroups: u64,
    /// Invocations per workgroup.
    pub invocations: u32,
    /// Bytes of W_hh one step reads.
    pub w_hh_bytes: u64,
}

impl GpuLstm {
    /// What one forward step dispatch launches at batch size `batch`: in the
    /// configuration set, or chosen for this batch size (the default before
    /// the first pass at it).
    pub fn step_launch(&self, batch: usize) -> StepLaunch {
        let cfg = &self.config;
        let config = self
            .step_config
            .or_else(|| {
                self.ctx
                    .known_step_config(self.precision, cfg.hidden_size, cfg.hidden_out(), batch)
            })
            .unwrap_or_else(|| StepConfig::default_for(cfg.hidden_out()));
        let tile = config.tile(batch, cfg.hidden_out());
        let (x, y, z) = tile.workgroups(cfg.hidden_size, batch, cfg.num_directions());
        let w_hh = (cfg.num_directions() * 4 * cfg.hidden_size * cfg.hidden_out()) as u64;
        StepLaunch {
            workgroups: x as u64 * y as u64 * z as u64,
            invocations: tile.workgroup_size(),
            w_hh_bytes: y as u64 * w_hh * self.precision.bytes(),
        }
    }

    /// Runs the forward step kernel in `config` from the next call on.
    /// Every configuration computes the same result; they differ in how the
    /// work is spread over the GPU. The per-shape workspaces are rebuilt, so
    /// a [`backward`](Self::backward) must follow its own training forward
    /// made after this call. An invalid configuration is an error and
    /// changes nothing.
    pub fn set_step_config(&mut self, config: StepConfig) -> Result<()> {
        config.validate(self.ctx.limits().max_compute_invocations_per_workgroup)?;
        if Some(config) != self.step_config {
            self.step_config = Some(config);
            self.workspaces.clear();
            self.last_train = None;
        }
        Ok(())
    }

    /// The step configuration at batch size `batch`: the one set, or the
    /// tuner's choice for its class (measured on first use).
    pub(super) fn step_config_for(&self, batch: usize) -> Result<StepConfig> {
        match self.step_config {
            Some(c) => Ok(c),
            None => self.ctx.step_config_for(
                self.precision,
                self.config.hidden_size,
                self.config.hidden_out(),
                batch,
            ),
        }
    }
}

/// Whether a forward pass runs as a wavefront: a unidirectional stack of two
/// or more layers without a hidden projection or layer norm.
pub(super) fn wavefront_fits(config: &LstmConfig) -> bool {
    !config.bidirectional && config.proj_size == 0 && config.num_layers >= 2 && !config.layer_norm
}
