//! The runtime autotuner. No tile shape is right for every GPU, so on the
//! first use of a shape class on an adapter the tuner
//! 1. checks every candidate configuration of the kernel family against the
//!    CPU reference on a small problem, on this adapter, and excludes (and
//!    reports) any that disagrees: drivers miscompile;
//! 2. times the candidates that agree, with GPU timestamp queries where the
//!    adapter has them (wall time otherwise), and keeps the fastest.
//!
//! Choices are kept in memory by the [`GpuContext`](crate::gpu::GpuContext)
//! and on disk (`wgpu-lstm/tuning.tsv` under the user's cache directory, or
//! the file `WGPU_LSTM_TUNE_CACHE` names), keyed by adapter, driver and crate
//! version.
//! `WGPU_LSTM_TUNE` sets the [`TuneMode`]. Every candidate computes the same
//! function, and a given choice computes it the same way every time, so
//! results are bitwise deterministic for a given choice.

pub(crate) mod cache;
pub(crate) mod gemm;
pub(crate) mod step;

use crate::error::{LstmError, Result};

/// How the tuner behaves, from `WGPU_LSTM_TUNE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// Use the cached choice, and measure what the cache lacks (the default:
    /// `WGPU_LSTM_TUNE` unset, empty or `on`).
    On,
    /// The built-in defaults: no measurement, no cache (`off`).
    Off,
    /// Measure again, ignoring the cache, and rewrite it (`force`).
    Force,
}

impl TuneMode {
    /// The mode `WGPU_LSTM_TUNE` asks for; another value is an error.
    ///
    /// In a browser (wasm32) the tuner is off: it times candidates on the
    /// host around blocking waits, which a browser does not allow, so the
    /// built-in defaults are used.
    pub fn from_env() -> Result<Self> {
        if cfg!(target_arch = "wasm32") {
            return Ok(TuneMode::Off);
        }
        Self::parse(std::env::var("WGPU_LSTM_TUNE").ok().as_deref())
    }

    /// The mode a value of `WGPU_LSTM_TUNE` (`None`: unset) asks for.
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.unwrap_or("") {
            "" | "on" => Ok(TuneMode::On),
            "off" => Ok(TuneMode::Off),
            "force" => Ok(TuneMode::Force),
            v => Err(LstmError::value(
                "WGPU_LSTM_TUNE",
                format!("{v:?}: use `on` (the default), `off` or `force`"),
            )),
        }
    }
}

/// Where a choice came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneSource {
    /// Measured in this process.
    Measured,
    /// Read from the disk cache.
    Cache,
    /// The built-in default (`WGPU_LSTM_TUNE=off`).
    Default,
}

/// What the tuner chose for one shape class of one kernel family, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneReport {
    /// The kernel family, e.g. `lstm step`.
    pub family: String,
    /// The shape class, e.g. `f32 H=128 H_out=128 rows=16`.
    pub class: String,
    /// The configuration chosen, e.g. `32x4` (lanes × units).
    pub chosen: String,
    /// Measured now, read from the cache, or the built-in default.
    pub source: TuneSource,
    /// Each candidate that agreed with the reference, with its time in ms
    /// (empty unless measured).
    pub times_ms: Vec<(String, f64)>,
    /// How the times were taken: `gpu timestamps` or `wall`.
    pub timer: &'static str,
    /// Candidates excluded, each with the reason (its output disagreed with
    /// the reference on this adapter, or it failed to build or run).
    pub excluded: Vec<(String, String)>,
    /// The work the measurement did on the context (submits, dispatches,
    /// ...), which the context's own counters leave out.
    pub work: crate::gpu::Counters,
    /// How long the measurement took, checks included (0 unless measured).
    pub elapsed_ms: f64,
}

impl TuneReport {
    /// The report of a measurement that chose `s` for (family, class).
    pub(crate) fn measured<C>(
        family: &str,
        class: String,
        s: Selection<C>,
        timer: &'static str,
    ) -> Self {
        TuneReport {
            family: family.to_string(),
            class,
            chosen: s.name,
            source: TuneSource::Measured,
            times_ms: s.times_ms,
            timer,
            excluded: s.excluded,
            work: Default::default(),
            elapsed_ms: 0.0,
        }
    }
}

/// One line: the family, class and choice, where it came from, and when
/// measured, how long that took, each candidate's time and each exclusion.
impl std::fmt::Display for TuneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = format!("{:?}", self.source).to_lowercase();
        write!(
            f,
            "{} {}: {} ({source}",
            self.family, self.class, self.chosen
        )?;
        if !self.times_ms.is_empty() {
            let times: Vec<String> = self
                .times_ms
                .iter()
                .map(|(n, ms)| format!("{n} {ms:.3} ms"))
                .collect();
            write!(
                f,
                ", in {:.1} s; {}: {}",
                self.elapsed_ms / 1e3,
                self.timer,
                times.join(", ")
            )?;
        }
        for (n, why) in &self.excluded {
            write!(f, "; excluded {n}: {why}")?;
        }
        f.write_str(")")
    }
}

/// FNV-1a over the sources of the tunable kernels and the names of their
/// candidates: part of the disk cache's key, so that a choice measured
/// among other kernels or candidates is measured again.
pub(crate) fn fingerprint() -> u64 {
    let mut text: Vec<String> = [
        include_str!("../../../shaders/gemm.wgsl"),
        include_str!("../../../shaders/gemm_tiled.wgsl"),
        include_str!("../../../shaders/gemm_direct.wgsl"),
        include_str!("../../../shaders/step_reduce.wgsl"),
        include_str!("../../../shaders/lstm_step.wgsl"),
        include_str!("../../../shaders/lstm_wavefront.wgsl"),
        include_str!("../../../shaders/backward_common.wgsl"),
        include_str!("../../../shaders/lstm_step_backward.wgsl"),
    ]
    .map(String::from)
    .to_vec();
    text.extend(crate::gpu::kernels::GemmTile::CANDIDATES.map(gemm::name));
    text.extend(crate::gpu::kernels::StepConfig::CANDIDATES.map(step::name));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in &text {
        for b in t.bytes().chain([0]) {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// One candidate configuration and its name in reports and the cache.
pub(crate) struct Candidate<C> {
    pub config: C,
    pub name: String,
}

/// The outcome of [`select`].
pub(crate) struct Selection<C> {
    pub chosen: C,
    pub name: String,
    pub times_ms: Vec<(String, f64)>,
    pub excluded: Vec<(String, String)>,
}

/// Checks every candidate (`check` returns `Ok(None)` when its output agrees
/// with the reference, `Ok(Some(why))` when not), times those that agree
/// (`time`, in ms) and returns the fastest. A candidate whose check or timing
/// fails with an error is excluded with that error. Every candidate excluded
/// is an error naming each and why: nothing trustworthy is left to run.
pub(crate) fn select<C: Copy>(
    family: &str,
    class: &str,
    candidates: &[Candidate<C>],
    mut check: impl FnMut(C) -> Result<Option<String>>,
    mut time: impl FnMut(C) -> Result<f64>,
) -> Result<Selection<C>> {
    let mut times_ms = Vec::new();
    let mut excluded = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let ms = match check(c.config) {
            Ok(None) => time(c.config),
            Ok(Some(why)) => {
                excluded.push((c.name.clone(), why));
                continue;
            }
            Err(e) => Err(e),
        };
        match ms {
            Ok(ms) => {
                times_ms.push((c.name.clone(), ms));
                if best.is_none_or(|(_, b)| ms < b) {
                    best = Some((i, ms));
                }
            }
            Err(e) => excluded.push((c.name.clone(), e.to_string())),
        }
    }
    match best {
        Some((i, _)) => Ok(Selection {
            chosen: candidates[i].config,
            name: candidates[i].name.clone(),
            times_ms,
            excluded,
        }),
        None => Err(LstmError::Gpu(format!(
            "no {family} configuration computes correctly on this adapter for {class}: {}",
            excluded
                .iter()
                .map(|(n, why)| format!("{n}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The tuner's state on one context: its mode, its disk cache and the
/// choices made or read so far, with their reports.
pub(crate) struct Tuner {
    mode: TuneMode,
    cache: Option<cache::DiskCache>,
    choices: Vec<TuneReport>,
}

impl Tuner {
    /// A tuner for the adapter described by `adapter_key` (adapter, driver),
    /// in `mode`, caching at `path` (none: in memory only).
    pub fn new(mode: TuneMode, adapter_key: String, path: Option<std::path::PathBuf>) -> Self {
        let cache = match mode {
            TuneMode::Off => None,
            _ => path.map(|p| cache::DiskCache::new(p, adapter_key)),
        };
        Tuner {
            mode,
            cache,
            choices: Vec::new(),
        }
    }

    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    pub fn reports(&self) -> Vec<TuneReport> {
        self.choices.clone()
    }

    /// The choice already made or cached for (family, class), if any: from
    /// memory, else (mode `On`) from the disk cache.
    pub fn lookup(&mut self, family: &str, class: &str) -> Option<String> {
        if let Some(r) = self
            .choices
            .iter()
            .find(|r| r.family == family && r.class == class)
        {
            return Some(r.chosen.clone());
        }
        if self.mode != TuneMode::On {
            return None;
        }
        let chosen = self.cache.as_ref()?.get(family, class)?;
        self.choices.push(TuneReport {
            family: family.to_string(),
            class: class.to_string(),
            chosen: chosen.clone(),
            source: TuneSource::Cache,
            times_ms: Vec::new(),
            timer: "",
            excluded: Vec::new(),
            work: Default::default(),
            elapsed_ms: 0.0,
        });
        Some(chosen)
    }

    /// Records a choice, and writes it to the disk cache when measured.
    pub fn record(&mut self, report: TuneReport) {
        if report.source == TuneSource::Measured
            && let Some(cache) = &self.cache
        {
            cache.put(&report.family, &report.class, &report.chosen);
        }
        self.choices
            .retain(|r| !(r.family == report.family && r.class == report.class));
        self.choices.push(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate<u32>> {
        (1..=4)
            .map(|c| Candidate {
                config: c,
                name: format!("c{c}"),
            })
            .collect()
    }

    #[test]
    fn the_fastest_agreeing_candidate_wins_and_a_wrong_one_is_excluded() {
        // Candidate 3 is the fastest but computes a wrong result on purpose.
        let s = select(
            "test",
            "class",
            &candidates(),
            |c| Ok((c == 3).then(|| "max error 0.5".to_string())),
            |c| Ok([0.0, 4.0, 2.0, 1.0, 3.0][c as usize]),
        )
        .unwrap();
        assert_eq!((s.chosen, s.name.as_str()), (2, "c2"));
        assert_eq!(
            s.excluded,
            vec![("c3".to_string(), "max error 0.5".to_string())]
        );
        assert_eq!(s.times_ms.len(), 3);
    }

    #[test]
    fn a_candidate_that_fails_to_run_is_excluded_with_its_error() {
        let s = select(
            "test",
            "class",
            &candidates(),
            |_| Ok(None),
            |c| match c {
                1 => Err(LstmError::Gpu("pipeline creation failed".into())),
                _ => Ok(c as f64),
            },
        )
        .unwrap();
        assert_eq!(s.chosen, 2);
        assert!(s.excluded[0].1.contains("pipeline creation failed"));
    }

    #[test]
    fn no_agreeing_candidate_is_an_error_naming_each() {
        let Err(e) = select(
            "test",
            "H=8",
            &candidates(),
            |c| Ok(Some(format!("wrong {c}"))),
            |_| Ok(1.0),
        ) else {
            panic!("every candidate was wrong")
        };
        let msg = e.to_string();
        assert!(msg.contains("H=8") && msg.contains("c1: wrong 1") && msg.contains("c4: wrong 4"));
    }

    #[test]
    fn the_mode_follows_wgpu_lstm_tune() {
        for (v, want) in [
            (None, Some(TuneMode::On)),
            (Some(""), Some(TuneMode::On)),
            (Some("on"), Some(TuneMode::On)),
            (Some("off"), Some(TuneMode::Off)),
            (Some("force"), Some(TuneMode::Force)),
            (Some("sometimes"), None),
        ] {
            assert_eq!(TuneMode::parse(v).ok(), want, "{v:?}");
        }
    }
}
