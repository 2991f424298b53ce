//! The tuner's disk cache: one small text file of choices, keyed by crate
//! version (with a fingerprint of the tunable kernels and their
//! candidates, so that a build whose kernels changed measures again),
//! adapter (with its driver) and shape class.
//!
//! Where: `WGPU_LSTM_TUNE_CACHE` (a file path) when set, else
//! `wgpu-lstm/tuning.tsv` under the user's cache directory
//! (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS,
//! `%LOCALAPPDATA%` on Windows). Format: a header line, then one
//! tab-separated line per choice: crate version, adapter key, kernel family,
//! shape class, choice.
//!
//! The file is only ever replaced whole: a new version is written to a
//! temporary file beside it (named by process and time) and renamed over it,
//! so a reader never sees a partial file, and processes writing at once each
//! leave a whole file (the last rename wins; a choice it lacks is measured
//! again). A file that cannot be read or parsed, and lines from another
//! version, are ignored with a warning on stderr, never an error: the cache
//! only saves time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const HEADER: &str = "# wgpu-lstm tuning cache 1";

/// The version field of this build's entries: the crate version and a
/// fingerprint of what a choice depends on (see [`super::fingerprint`]).
fn version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{}+{:016x}",
            env!("CARGO_PKG_VERSION"),
            super::fingerprint()
        )
    })
}

/// The cache file `WGPU_LSTM_TUNE_CACHE` names, or the default under the
/// user's cache directory; `None` when there is no cache directory.
pub fn default_path() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("WGPU_LSTM_TUNE_CACHE") {
        return Some(p);
    }
    let dir = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }?;
    Some(dir.join("wgpu-lstm").join("tuning.tsv"))
}

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    version: String,
    adapter: String,
    family: String,
    class: String,
    choice: String,
}

/// A field as written: tabs and line breaks would split it.
fn field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// The entries of `text`, or why it is not a cache file.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a wgpu-lstm tuning cache (its first line is not the header)".into());
    }
    lines
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| match line.split('\t').collect::<Vec<_>>()[..] {
            [version, adapter, family, class, choice] => Ok(Entry {
                version: version.into(),
                adapter: adapter.into(),
                family: family.into(),
                class: class.into(),
                choice: choice.into(),
            }),
            _ => Err(format!("line {} has not 5 tab-separated fields", i + 2)),
        })
        .collect()
}

fn render(entries: &[Entry]) -> String {
    let mut out = format!("{HEADER}\n");
    for e in entries {
        out += &format!(
            "{}\t{}\t{}\t{}\t{}\n",
            e.version, e.adapter, e.family, e.class, e.choice
        );
    }
    out
}

fn warn(path: &Path, what: &str) {
    eprintln!(
        "wgpu-lstm: ignoring the tuning cache {}: {what}",
        path.display()
    );
}

/// Reads the file's entries; a missing file is empty, and an unreadable or
/// malformed one is ignored with a warning.
fn load(path: &Path) -> Vec<Entry> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| parse(&t))
        {
            Ok(entries) => entries,
            Err(why) => {
                warn(path, &why);
                Vec::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn(path, &e.to_string());
            Vec::new()
        }
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, synced,
/// then renamed over it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = path
        .file_name()
        .map_or("tuning".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{nanos}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The disk cache of one adapter.
pub(crate) struct DiskCache {
    path: PathBuf,
    adapter: String,
}

impl DiskCache {
    pub fn new(path: PathBuf, adapter: String) -> Self {
        DiskCache {
            path,
            adapter: field(&adapter),
        }
    }

    /// The cached choice for (family, class) on this adapter and version.
    pub fn get(&self, family: &str, class: &str) -> Option<String> {
        let entries = load(&self.path);
        let stale = entries.iter().filter(|e| e.version != version()).count();
        if stale > 0 {
            warn(
                &self.path,
                &format!(
                    "{stale} choices from another wgpu-lstm version or kernel set (this is {})",
                    version()
                ),
            );
        }
        entries
            .into_iter()
            .find(|e| {
                e.version == version()
                    && e.adapter == self.adapter
                    && e.family == family
                    && e.class == class
            })
            .map(|e| e.choice)
    }

    /// Adds or replaces the choice for (family, class), keeping the other
    /// entries of this version; a failed write is a warning.
    pub fn put(&self, family: &str, class: &str, choice: &str) {
        let (family, class) = (field(family), field(class));
        let mut entries: Vec<Entry> = load(&self.path)
            .into_iter()
            .filter(|e| {
                e.version == version()
                    && !(e.adapter == self.adapter && e.family == family && e.class == class)
            })
            .collect();
        entries.push(Entry {
            version: version().into(),
            adapter: self.adapter.clone(),
            family,
            class,
            choice: field(choice),
        });
        if let Err(e) = write_atomically(&self.path, &render(&entries)) {
            eprintln!(
                "wgpu-lstm: could not write the tuning cache {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wgpu-lstm-tune-{name}-{}-{}",
            std::process::id(),
            SEQ_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
    static SEQ_DIR: AtomicU64 = AtomicU64::new(0);

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn choices_round_trip_per_adapter_and_class() {
        let dir = temp_dir("round-trip");
        let path = dir.join("sub").join("tuning.tsv");
        let a = DiskCache::new(path.clone(), "GPU A\tdriver 1".into());
        let b = DiskCache::new(path.clone(), "GPU B".into());
        assert_eq!(a.get("lstm step", "f32 H=8"), None);
        a.put("lstm step", "f32 H=8", "16x8");
        b.put("lstm step", "f32 H=8", "32x4");
        a.put("lstm step", "f32 H=64", "8x16");
        a.put("lstm step", "f32 H=8", "64x4");
        assert_eq!(a.get("lstm step", "f32 H=8").as_deref(), Some("64x4"));
        assert_eq!(a.get("lstm step", "f32 H=64").as_deref(), Some("8x16"));
        assert_eq!(b.get("lstm step", "f32 H=8").as_deref(), Some("32x4"));
        assert_eq!(b.get("gemm", "f32 H=8"), None);
        // No temporary file is left behind.
        assert_eq!(files(&dir.join("sub")), vec!["tuning.tsv"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_or_another_version_is_ignored_and_then_replaced() {
        let dir = temp_dir("corrupt");
        let path = dir.join("tuning.tsv");
        let cache = DiskCache::new(path.clone(), "GPU".into());
        for bad in [
            &b"\xff\xfe not text"[..],
            b"some other file\n",
            b"# wgpu-lstm tuning cache 1\nonly\ttwo\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(cache.get("lstm step", "c"), None);
            cache.put("lstm step", "c", "8x16");
            assert_eq!(cache.get("lstm step", "c").as_deref(), Some("8x16"));
        }
        // A choice written by another version is not used, and is dropped
        // when this version writes.
        std::fs::write(
            &path,
            format!("{HEADER}\n0.0.0-other\tGPU\tlstm step\tc\t32x4\n"),
        )
        .unwrap();
        assert_eq!(cache.get("lstm step", "c"), None);
        cache.put("lstm step", "d", "16x8");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("0.0.0-other"), "{text}");
        assert_eq!(files(&dir), vec!["tuning.tsv"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_are_keyed_by_version_and_kernel_fingerprint() {
        let v = version();
        let (crate_version, print) = v.split_once('+').unwrap();
        assert_eq!(crate_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(print, format!("{:016x}", super::super::fingerprint()));
        // An entry of the same crate version under another kernel set is
        // stale.
        let dir = temp_dir("fingerprint");
        let path = dir.join("tuning.tsv");
        let other = format!("{crate_version}+0000000000000000");
        std::fs::write(&path, format!("{HEADER}\n{other}\tGPU\tgemm\tc\tx\n")).unwrap();
        assert_eq!(DiskCache::new(path, "GPU".into()).get("gemm", "c"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_cache_is_a_warning_not_a_failure() {
        let dir = temp_dir("unwritable");
        // The cache path is a directory: reading and writing it fail.
        let cache = DiskCache::new(dir.clone(), "GPU".into());
        cache.put("lstm step", "c", "8x16");
        assert_eq!(cache.get("lstm step", "c"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writers_at_once_leave_a_whole_file() {
        let dir = temp_dir("concurrent");
        let path = dir.join("tuning.tsv");
        std::thread::scope(|s| {
            for w in 0..8 {
                let path = path.clone();
                s.spawn(move || {
                    let cache = DiskCache::new(path, format!("GPU {w}"));
                    for i in 0..20 {
                        cache.put("lstm step", &format!("class {i}"), "8x16");
                        // Every read sees a whole file.
                        let text = std::fs::read_to_string(&cache.path).unwrap();
                        assert!(parse(&text).is_ok(), "{text}");
                    }
                });
            }
        });
        assert!(parse(&std::fs::read_to_string(&path).unwrap()).is_ok());
        assert_eq!(files(&dir), vec!["tuning.tsv"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
