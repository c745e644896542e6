//! The training loop every iterative method runs on, and what a run reports.
//!
//! A method supplies its batch step and its epoch figures ([`Method`]); the
//! loop ([`run`]) owns the rest: the epoch's item order (shuffled, seeded
//! per epoch, so a resumed run retraces the uninterrupted one), cutting it
//! into batches, the time limit, one stop contract ([`Control`]), one
//! `metrics.jsonl` line and one terminal line per epoch, the progress bar,
//! an atomic checkpoint after every epoch, history replay on resume, and the
//! work meter. The run's plumbing (output directory, meter, terminal) is
//! the [`Session`], shared by every stage of one command.

pub mod checkpoint;
pub mod memory;
pub mod meter;
pub mod report;

use std::path::Path;
use std::time::Instant;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::{Backend, Collective, Local};
use crate::error::{Error, Result};
use crate::real::Precision;
use checkpoint::Totals;
use meter::{Measurement, Meter};
use report::{CommFields, Common, OutDir, Progress};

pub use report::OutMode;

pub use crate::random::epoch_order;

/// How an epoch's order is cut into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batches {
    /// ⌊n/|K|⌋ batches of |K| items (as the reference programs do; every
    /// item is drawn across epochs).
    Whole(usize),
    /// Batches of |K| items and a last, smaller one with the rest.
    WithRemainder(usize),
}

/// The shape of a run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Training items.
    pub items: usize,
    /// How each epoch's order is cut.
    pub batches: Batches,
    /// The last epoch (1-based).
    pub epochs: usize,
    /// Stop after the epoch during which this many seconds have passed.
    pub time_limit: Option<f64>,
}

/// Whether the run goes on after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// The method is done (e.g. a binary code is solved).
    Stop,
}

/// The end of one epoch, as the method reports it.
#[derive(Clone, Debug)]
pub struct EpochEnd<E> {
    /// The epoch's figures (its metrics.jsonl line and history entry).
    pub record: E,
    /// Work of the epoch (GWMs) for the meter.
    pub gwms: f64,
    /// Go on or stop.
    pub control: Control,
}

impl<E> EpochEnd<E> {
    /// An epoch after which training goes on.
    pub fn next(record: E, gwms: f64) -> Self {
        EpochEnd {
            record,
            gwms,
            control: Control::Continue,
        }
    }
}

/// What an iterative method supplies to the loop.
pub trait Method {
    /// One epoch's figures.
    type Record: Clone + serde::Serialize;

    /// The run's shape.
    fn plan(&self) -> Plan;

    /// The order of epoch `epoch`'s items (default: [`epoch_order`] with the
    /// method's seed).
    fn order(&mut self, epoch: usize) -> Vec<usize>;

    /// Trains on one batch (indices into the training items).
    fn batch(&mut self, epoch: usize, index: usize, items: &[usize]) -> Result<()>;

    /// The epoch's figures, after its batches; `seconds` is the wall time
    /// since the epoch began.
    fn end_epoch(&mut self, epoch: usize, seconds: f64) -> Result<EpochEnd<Self::Record>>;

    /// The checkpoint after an epoch, holding `history` (every epoch's
    /// record so far) and the run's `totals` up to now; `None` when the
    /// method keeps no checkpoints.
    fn checkpoint(&self, _history: &[Self::Record], _totals: &Totals) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// The record's metrics.jsonl line.
    fn metric(&self, record: &Self::Record) -> serde_json::Value {
        serde_json::to_value(record).expect("records serialize")
    }

    /// The record's terminal line (not printed with `quiet`).
    fn line(&self, record: &Self::Record) -> String;
}

/// Where a run starts: fresh, or after the epochs of a checkpoint.
#[derive(Clone, Debug)]
pub struct Start<R> {
    /// Epochs already trained.
    pub epoch: usize,
    /// Their records (replayed into metrics.jsonl).
    pub history: Vec<R>,
}

impl<R> Start<R> {
    /// A fresh run.
    pub fn fresh() -> Self {
        Start {
            epoch: 0,
            history: Vec::new(),
        }
    }
}

/// Why a run stopped before its last epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The time limit passed.
    TimeLimit,
    /// The method said so.
    Method,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Finish<R> {
    /// Every epoch's record, the resumed history first.
    pub history: Vec<R>,
    /// The last epoch trained (0 when none).
    pub epoch: usize,
    /// Set when the run stopped before its last epoch.
    pub stopped: Option<Stopped>,
}

/// The file a checkpoint is written to in the output directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// Trains `method` from `start` to the plan's last epoch, or until the
/// method stops or the time limit passes.
pub fn run<M: Method>(
    session: &mut Session,
    method: &mut M,
    start: Start<M::Record>,
) -> Result<Finish<M::Record>> {
    let plan = method.plan();
    let t0 = Instant::now();
    for record in &start.history {
        session.metric(&method.metric(record))?;
    }
    let mut history = start.history;
    let mut last = start.epoch;
    let mut stopped = None;
    let mut bar = Progress::new(plan.epochs as u64, session.quiet, "epochs");
    for epoch in start.epoch + 1..=plan.epochs {
        let te = Instant::now();
        let order = method.order(epoch);
        let size = match plan.batches {
            Batches::Whole(k) | Batches::WithRemainder(k) => k.max(1),
        };
        let count = match plan.batches {
            Batches::Whole(_) => order.len() / size,
            Batches::WithRemainder(_) => order.len().div_ceil(size),
        };
        for (b, items) in order.chunks(size).take(count).enumerate() {
            injected_fault(session.collective.rank());
            check_stop()?;
            method.batch(epoch, b, items)?;
        }
        let end = method.end_epoch(epoch, te.elapsed().as_secs_f64())?;
        session.add_gwms(end.gwms);
        bar.set(epoch as u64);
        if !session.quiet {
            let line = method.line(&end.record);
            bar.suspend(|| session.say(&line));
        }
        session.metric(&method.metric(&end.record))?;
        history.push(end.record);
        last = epoch;
        if let Some(bytes) = method.checkpoint(&history, &session.totals())? {
            session.file(CHECKPOINT, &bytes)?;
        }
        if end.control == Control::Stop {
            stopped = (epoch < plan.epochs).then_some(Stopped::Method);
            break;
        }
        if let Some(t) = plan.time_limit.filter(|_| epoch < plan.epochs) {
            // Rank 0's clock decides, so that every process stops together.
            let mine = [(t0.elapsed().as_secs_f64() >= t) as u64];
            if session.collective.all_gather_u64(&mine)?[0] == 1 {
                stopped = Some(Stopped::TimeLimit);
                break;
            }
        }
    }
    bar.finish();
    Ok(Finish {
        history,
        epoch: last,
        stopped,
    })
}

thread_local! {
    static STOP: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on this thread with `flag` as its stop request: the training
/// loop (between batches) and the HSIC solvers (between layers and ISM
/// iterations) end with [`Error::Interrupted`] once it is set. The Python
/// package sets it on KeyboardInterrupt.
pub fn with_stop_flag<R>(flag: Arc<AtomicBool>, f: impl FnOnce() -> R) -> R {
    let previous = STOP.with(|s| s.replace(Some(flag)));
    let out = f();
    STOP.with(|s| *s.borrow_mut() = previous);
    out
}

/// [`Error::Interrupted`] once this thread's stop flag is set.
pub fn check_stop() -> Result<()> {
    let stop = STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    });
    if stop {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Fault injection for the tests of multi-process runs: with
/// `GRADFREE_TEST_PANIC_RANK=r`, rank r panics before its first batch (the
/// other ranks must not wait for it forever).
fn injected_fault(rank: usize) {
    static RANK: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let target = RANK.get_or_init(|| {
        std::env::var("GRADFREE_TEST_PANIC_RANK")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if *target == Some(rank) {
        panic!("fault injected on rank {rank} (GRADFREE_TEST_PANIC_RANK)");
    }
}

/// How a session talks to the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Voice {
    /// Everything: headers, one line per epoch, results.
    Verbose,
    /// Results only (no progress bar, no per-epoch lines).
    Quiet,
    /// Nothing (the library called from another program).
    Silent,
}

/// The plumbing of one command's run: its output directory (written by
/// rank 0 only), work and energy meter, terminal, and the common summary
/// fields.
pub struct Session {
    out: OutDir,
    meter: Meter,
    /// The parts of the run before this one (a resumed run).
    prior: Totals,
    quiet: bool,
    voice: Voice,
    device: String,
    precision: Precision,
    collective: Arc<dyn Collective>,
}

impl Session {
    /// A session for a run on `backend`, writing into `out` (nothing when
    /// `None`, or on ranks other than 0), which a run of `mode` may use.
    pub fn new(backend: &Backend, out: Option<&Path>, mode: OutMode, voice: Voice) -> Result<Self> {
        let root = backend.collective().is_root();
        Ok(Session {
            out: OutDir::open(out.filter(|_| root), mode)?,
            meter: Meter::for_backend(backend),
            prior: Totals::default(),
            quiet: !root || voice != Voice::Verbose,
            voice: if root { voice } else { Voice::Silent },
            device: backend.describe(),
            precision: backend.precision(),
            collective: backend.collective_handle(),
        })
    }

    /// A session that writes and prints nothing (a library caller's).
    pub fn silent(backend: &Backend) -> Result<Self> {
        Self::new(backend, None, OutMode::New, Voice::Silent)
    }

    /// A session that keeps the run's files in memory instead of a
    /// directory (the Python package's): the run is the CLI's, and its
    /// files are taken afterwards with [`Session::take_file`].
    pub fn in_memory(backend: &Backend, voice: Voice) -> Result<Self> {
        let mut s = Self::new(backend, None, OutMode::New, voice)?;
        s.out = OutDir::in_memory();
        Ok(s)
    }

    /// A file of an in-memory session (`model.safetensors`,
    /// `metrics.jsonl`, `summary.json`, …), if the run wrote it.
    pub fn take_file(&self, name: &str) -> Option<Vec<u8>> {
        self.out.take(name)
    }

    /// A session for work the host does without a backend (forward passes
    /// of a trained model), described as `device` in the summary.
    pub fn host(
        device: &str,
        precision: Precision,
        out: Option<&Path>,
        mode: OutMode,
        voice: Voice,
    ) -> Result<Self> {
        Ok(Session {
            out: OutDir::open(out, mode)?,
            meter: Meter::start(meter::SensorKind::Cpu),
            prior: Totals::default(),
            quiet: voice != Voice::Verbose,
            voice,
            device: device.into(),
            precision,
            collective: Arc::new(Local),
        })
    }

    /// True when per-epoch lines and headers are not printed.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Prints an informative line (not with `quiet`).
    pub fn say(&self, line: &str) {
        if self.voice == Voice::Verbose {
            println!("{line}");
        }
    }

    /// Prints a result line (also with `quiet`).
    pub fn tell(&self, line: &str) {
        if self.voice != Voice::Silent {
            println!("{line}");
        }
    }

    /// Prints a warning on stderr.
    pub fn warn(&self, line: &str) {
        if self.voice != Voice::Silent {
            eprintln!("warning: {line}");
        }
    }

    /// The output directory.
    pub fn out(&self) -> &OutDir {
        &self.out
    }

    /// Appends a line to metrics.jsonl.
    pub fn metric(&mut self, value: &serde_json::Value) -> Result<()> {
        self.out.metric(value)
    }

    /// Writes a file into the output directory atomically.
    pub fn file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.out.file(name, bytes)
    }

    /// Adds work done (GWMs).
    pub fn add_gwms(&mut self, gwms: f64) {
        self.meter.add_gwms(gwms);
    }

    /// Goes on from the earlier parts of a run: the measurement and the
    /// summary then describe the whole run.
    pub fn continue_from(&mut self, prior: Totals) {
        self.prior = prior;
    }

    /// Work, time and energy so far, the earlier parts of a resumed run
    /// included.
    pub fn measure(&self) -> Measurement {
        let part = self.meter.measure();
        if self.prior.parts == 0 {
            return part;
        }
        let p = &self.prior;
        let gwms = p.gwms + part.gwms;
        let seconds = p.seconds + part.seconds;
        let joules = p.joules.zip(part.joules).map(|(a, b)| a + b);
        let energy_note = match (p.joules, part.joules) {
            (None, Some(_)) => format!(
                "unavailable for the whole run (earlier parts not measured; this part: {})",
                part.energy_note
            ),
            _ => part.energy_note,
        };
        Measurement {
            gwms,
            seconds,
            gwms_per_s: if seconds > 0.0 { gwms / seconds } else { 0.0 },
            joules,
            gwms_per_joule: joules.filter(|&j| j > 0.0).map(|j| gwms / j),
            energy_note,
        }
    }

    /// The run's totals so far (this part counted), for a checkpoint.
    pub fn totals(&self) -> Totals {
        let m = self.measure();
        Totals {
            gwms: m.gwms,
            seconds: m.seconds,
            joules: m.joules,
            parts: self.prior.parts + 1,
        }
    }

    /// Prints the measurement line and writes summary.json: the common
    /// keys (device, precision, `seed`, the measurement) merged with the
    /// method's own `fields`.
    pub fn finish(&self, seed: u64, fields: serde_json::Value) -> Result<Measurement> {
        let m = self.measure();
        self.tell(&m.line());
        self.summary(&m, seed, fields)?;
        Ok(m)
    }

    /// Writes summary.json from a measurement taken earlier.
    pub fn summary(&self, m: &Measurement, seed: u64, fields: serde_json::Value) -> Result<()> {
        let mut common = Common::new(self.device.clone(), self.precision, seed, m);
        let c = &self.collective;
        common.ranks = c.world();
        if c.world() > 1 {
            let s = c.stats();
            common.comm = Some(CommFields {
                allreduce_seconds: s.seconds,
                communicated_bytes: s.bytes,
                collective_calls: s.calls,
            });
            common.measurement.energy_note +=
                &format!(" (rank 0's sensor; {} ranks ran)", c.world());
        }
        self.out.summary(&common, fields)
    }
}
