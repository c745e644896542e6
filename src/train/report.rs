//! What a run reports: `metrics.jsonl` and `summary.json` in its output
//! directory (rank 0 writes; [`OutDir`] is the one place that decides),
//! the common summary keys, and the progress bar.

use std::path::{Path, PathBuf};

use super::meter::Measurement;
use crate::error::{Error, Result};
use crate::io::write_atomic;

/// The common fields of every summary.json.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Common {
    /// Device description.
    pub device: String,
    /// f32 or f64.
    pub precision: String,
    /// Seed of the run.
    pub seed: u64,
    /// gwms, seconds, gwms_per_s, joules, gwms_per_joule, energy_note.
    #[serde(flatten)]
    pub measurement: Measurement,
    /// Peak resident memory of the process so far (Linux VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Processes that trained the model together (MPI ranks).
    pub ranks: usize,
    /// What this process sent to a GPU per RRR iteration, when it ran any.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub device_work: Option<DeviceWork>,
    /// The bytes this process sent to and read from a GPU, when it used one.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub transfers: Option<Transfers>,
    /// Device time per kernel, when profiling was on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_profile: Option<Vec<crate::engine::gpu::KernelTime>>,
    /// Why a profiled run has no kernel times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_note: Option<String>,
    /// Rank 0's communication, when there were several ranks.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub comm: Option<CommFields>,
}

/// The device work of a run with RRR iterations on a GPU: all the process
/// sent to the device (evaluation included) divided by those iterations.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceWork {
    /// RRR iterations run on the device.
    pub device_iterations: u64,
    /// Queue submits (readbacks included) per iteration.
    pub submits_per_iteration: f64,
    /// Compute dispatches per iteration.
    pub dispatches_per_iteration: f64,
    /// Blocking readbacks per iteration.
    pub readbacks_per_iteration: f64,
    /// Modelled device traffic per (item, edge) and iteration, bytes.
    pub bytes_per_item_edge: f64,
}

impl DeviceWork {
    /// The process's counts so far, or None when it ran no RRR iteration
    /// on a device.
    pub fn now(precision: crate::real::Precision) -> Option<Self> {
        let iters = crate::engine::gpu::rrr_iterations();
        if iters == 0 {
            return None;
        }
        let w = crate::engine::gpu::work_counts();
        let per = |v: u64| v as f64 / iters as f64;
        Some(DeviceWork {
            device_iterations: iters,
            submits_per_iteration: per(w.submits),
            dispatches_per_iteration: per(w.dispatches),
            readbacks_per_iteration: per(w.readbacks),
            bytes_per_item_edge: crate::engine::gpu::traffic_per_item_edge()
                * precision.bytes() as f64,
        })
    }
}

/// The bytes that crossed between the host and a GPU.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Transfers {
    /// Bytes written into device buffers (uploads and uniforms).
    pub bytes_to_device: u64,
    /// Bytes read back from the device.
    pub bytes_from_device: u64,
}

impl Transfers {
    /// The process's transfers so far, or None when it sent a GPU nothing.
    pub fn now() -> Option<Self> {
        let w = crate::engine::gpu::work_counts();
        (w.bytes_to_device + w.bytes_from_device > 0).then_some(Transfers {
            bytes_to_device: w.bytes_to_device,
            bytes_from_device: w.bytes_from_device,
        })
    }
}

/// What rank 0 of a multi-process run spent communicating.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommFields {
    /// Seconds in collectives (allreduces, gathers, broadcasts), waits for
    /// slower ranks included.
    pub allreduce_seconds: f64,
    /// Bytes rank 0 contributed to them.
    pub communicated_bytes: u64,
    /// Collective calls.
    pub collective_calls: u64,
}

/// The process's peak resident memory (VmHWM of /proc/self/status), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Common {
    /// From a measurement.
    pub fn new(
        device: String,
        precision: crate::real::Precision,
        seed: u64,
        m: &Measurement,
    ) -> Self {
        Common {
            device,
            precision: precision.to_string(),
            seed,
            measurement: m.clone(),
            peak_rss_bytes: peak_rss_bytes(),
            device_work: DeviceWork::now(precision),
            transfers: Transfers::now(),
            kernel_profile: crate::engine::gpu::kernel_times().ok(),
            profile_note: crate::engine::gpu::profiling()
                .then(crate::engine::gpu::kernel_times)
                .and_then(|r| r.err()),
            ranks: 1,
            comm: None,
        }
    }
}

/// How a run may use an output directory that already holds files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutMode {
    /// A new run: a directory holding another run's outputs is refused.
    New,
    /// A resumed run: the directory's outputs are its own.
    Continue,
    /// A new run that replaces what the directory holds.
    Overwrite,
}

/// The files whose presence marks a directory as another run's.
const RUN_FILES: [&str; 4] = [
    "summary.json",
    "metrics.jsonl",
    "checkpoint.safetensors",
    "model.safetensors",
];

/// The lock file a running run keeps in its output directory (its process id).
const LOCK: &str = ".gradfree.lock";

/// An output directory (or none: nothing is written; or memory: a library
/// caller's run, whose files it takes afterwards). While it exists it holds
/// the directory's lock, so two runs never write into one directory at once.
#[derive(Debug)]
pub struct OutDir {
    dir: Option<PathBuf>,
    metrics: Vec<u8>,
    locked: bool,
    memory: Option<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>,
}

impl OutDir {
    /// Creates or opens the directory for a run of `mode` and takes its lock.
    pub fn open(dir: Option<&Path>, mode: OutMode) -> Result<Self> {
        let Some(d) = dir else {
            return Ok(OutDir {
                dir: None,
                metrics: Vec::new(),
                locked: false,
                memory: None,
            });
        };
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        lock(d)?;
        crate::io::remove_stale_temporaries(d);
        let out = OutDir {
            dir: Some(d.to_path_buf()),
            metrics: Vec::new(),
            locked: true,
            memory: None,
        };
        if mode == OutMode::New {
            if let Some(f) = RUN_FILES.iter().find(|f| d.join(f).exists()) {
                return Err(Error::Input(format!(
                    "{} holds another run's outputs ({f}): resume that run, write elsewhere, or overwrite it",
                    d.display()
                )));
            }
        }
        Ok(out)
    }

    /// Outputs kept in memory: every file the run writes (metrics.jsonl and
    /// summary.json included), for [`OutDir::take`].
    pub fn in_memory() -> Self {
        OutDir {
            dir: None,
            metrics: Vec::new(),
            locked: false,
            memory: Some(Default::default()),
        }
    }

    /// A file an in-memory run wrote (None for a directory, or when the
    /// run did not write it).
    pub fn take(&self, name: &str) -> Option<Vec<u8>> {
        if name == "metrics.jsonl" && self.memory.is_some() {
            return Some(self.metrics.clone());
        }
        let files = self.memory.as_ref()?;
        files.lock().unwrap_or_else(|e| e.into_inner()).remove(name)
    }

    /// The directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Path of a file in the directory.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Appends one JSON line to metrics.jsonl (rewritten atomically each time).
    pub fn metric(&mut self, value: &serde_json::Value) -> Result<()> {
        let path = self.path("metrics.jsonl");
        if path.is_none() && self.memory.is_none() {
            return Ok(());
        }
        serde_json::to_writer(&mut self.metrics, value).expect("JSON to memory");
        self.metrics.push(b'\n');
        match path {
            Some(p) => write_atomic(&p, &self.metrics),
            None => Ok(()),
        }
    }

    /// Writes summary.json: the common fields merged with the method's own.
    pub fn summary(&self, common: &Common, own: serde_json::Value) -> Result<()> {
        let mut v = serde_json::to_value(common).expect("serializable");
        if let (Some(m), serde_json::Value::Object(o)) = (v.as_object_mut(), own) {
            m.extend(o);
        }
        let text = serde_json::to_string_pretty(&v).expect("JSON");
        self.file("summary.json", text.as_bytes())
    }

    /// Writes any file atomically.
    pub fn file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        if let Some(files) = &self.memory {
            let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
            files.insert(name.to_string(), bytes.to_vec());
            return Ok(());
        }
        match self.path(name) {
            Some(p) => write_atomic(&p, bytes),
            None => Ok(()),
        }
    }
}

/// A progress bar that appears only once the work has run for a second,
/// and never when stderr is not a terminal or with --quiet.
pub struct Progress {
    bar: indicatif::ProgressBar,
    start: std::time::Instant,
    enabled: bool,
    shown: bool,
}

impl Progress {
    /// A bar of `len` steps labelled `what`.
    pub fn new(len: u64, quiet: bool, what: &str) -> Self {
        use std::io::IsTerminal;
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::hidden(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Progress {
            bar,
            start: std::time::Instant::now(),
            enabled: !quiet && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// Moves the bar to `pos`.
    pub fn set(&mut self, pos: u64) {
        if self.enabled && !self.shown && self.start.elapsed().as_secs_f64() >= 1.0 {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position(pos);
    }

    /// Runs `f` (which prints) with the bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let (true, Some(d)) = (self.locked, &self.dir) {
            let _ = std::fs::remove_file(d.join(LOCK));
        }
    }
}

/// Takes DIR's lock: creates the lock file with this process's id; a lock
/// whose process is gone (a killed run) is taken over.
fn lock(dir: &Path) -> Result<()> {
    use std::io::Write;
    let path = dir.join(LOCK);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                match owner {
                    Some(pid) if pid != std::process::id() && process_alive(pid) => {
                        return Err(Error::Input(format!(
                            "{} is in use by another gradfree run (process {pid})",
                            dir.display()
                        )));
                    }
                    // Stale (or unreadable, or ours): take it over.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Err(Error::Input(format!(
        "{}: could not take the output directory's lock",
        dir.display()
    )))
}

/// True when a process of this id exists and has not exited (Linux:
/// /proc, where a killed process nobody has reaped yet lingers as a
/// zombie; elsewhere assumed).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // The state follows the parenthesized command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}
