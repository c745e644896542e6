//! Options and parsing shared by the commands.

use anyhow::Result;
use clap::Args;
use gradfree::data::Limits;
use gradfree::data::labeled::{self, Labeled, LabeledFormat};
use gradfree::engine::{Backend, DeviceChoice};
use gradfree::gpu::{BackendChoice, GpuRequest};
use gradfree::train::memory::{self, Budget};
use gradfree::train::{OutMode, Session, Voice};
use gradfree::{Error, Precision};
use std::path::PathBuf;

/// The ids of the arguments given on the command line (not defaulted), of
/// the command that runs.
static GIVEN: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();

/// Records which arguments the command line gave (see [`given`]).
pub(crate) fn record_given(matches: &clap::ArgMatches) {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    let ids = m
        .ids()
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect();
    let _ = GIVEN.set(ids);
}

/// True when the argument `id` (the field name) was given on the command line.
pub(crate) fn given(id: &str) -> bool {
    GIVEN.get().is_some_and(|g| g.contains(id))
}

/// Arguments given with `--resume` that contradict the checkpoint: a
/// resumed run keeps its settings, so each is refused, all in one message.
#[derive(Default)]
pub(crate) struct Contradictions(Vec<String>);

impl Contradictions {
    /// Notes `--flag` (field `id`) when it was given and differs from the
    /// checkpoint's value.
    pub(crate) fn check<T: PartialEq + std::fmt::Debug>(
        &mut self,
        id: &str,
        given_value: T,
        saved: T,
    ) {
        if given(id) && given_value != saved {
            self.0.push(format!(
                "--{} {given_value:?} (the checkpoint has {saved:?})",
                id.replace('_', "-")
            ));
        }
    }

    /// Notes `--flag` (field `id`): `why` it differs from the checkpoint.
    pub(crate) fn differs(&mut self, id: &str, why: &str) {
        self.0.push(format!("--{} ({why})", id.replace('_', "-")));
    }

    /// Refuses the run when anything contradicts the checkpoint.
    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(Error::Input(format!(
            "--resume keeps the checkpoint's settings; these arguments contradict it: {} (start a new run in another directory to change them)",
            self.0.join(", ")
        ))
        .into())
    }
}

/// The precision of a resumed run: the checkpoint's unless `--precision`
/// is given (a different one is then refused by the library).
pub(crate) fn resumed_common(c: &CommonArgs, saved: Option<Precision>) -> CommonArgs {
    let mut c = c.clone();
    if let (Some(p), false) = (saved, given("precision")) {
        c.precision = p;
    }
    c
}

/// Options every command that runs work takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// Where to run: auto = a hardware GPU if present, else the CPU backend.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub(crate) device: DeviceChoice,
    /// Graphics API for --device gpu|auto (else WGPU_BACKEND, else any).
    #[arg(long, value_enum)]
    pub(crate) backend: Option<BackendChoice>,
    /// Adapter name substring (else WGPU_ADAPTER_NAME).
    #[arg(long)]
    pub(crate) adapter: Option<String>,
    /// Working precision: f32 or f64 (f64 on GPUs with SHADER_F64).
    #[arg(long, default_value = "f32")]
    pub(crate) precision: Precision,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Output directory (metrics.jsonl, summary.json, ...), written atomically.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// No progress bar and only the summary on the terminal.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Write into --out even when it holds another run's outputs (they are
    /// replaced).
    #[arg(long)]
    pub(crate) force: bool,
    /// The most memory the run may plan to use, e.g. 16G or 512M (default:
    /// the memory available on this machine); larger runs are refused.
    #[arg(long, value_parser = parse_size)]
    pub(crate) max_memory: Option<u64>,
}

impl CommonArgs {
    /// The run's session on `backend`: the output directory, the meter,
    /// the terminal (quiet or not).
    pub(crate) fn session(&self, backend: &Backend) -> Result<Session> {
        self.session_in(backend, self.out.as_deref())
    }

    /// [`CommonArgs::session`] writing into `out` instead of `--out`.
    pub(crate) fn session_in(
        &self,
        backend: &Backend,
        out: Option<&std::path::Path>,
    ) -> Result<Session> {
        Ok(Session::new(backend, out, self.out_mode(), self.voice())?)
    }

    /// The memory budget of `--max-memory`.
    pub(crate) fn budget(&self) -> Budget {
        Budget::new(self.max_memory)
    }

    /// Refuses `rows` rows of `width` values that would not fit the memory
    /// budget (what a command draws, decodes or writes: a few copies of
    /// each, their text included).
    pub(crate) fn check_rows(&self, rows: usize, width: usize, what: &str) -> Result<()> {
        Ok(self
            .budget()
            .check(memory::mul(&[rows, width, 4 * 8]), what)?)
    }

    /// Refuses an RRR run whose batches of `items` items on a net of
    /// `size` (nodes, edges; None when they overflow) would not fit the
    /// budget, before the net is built.
    pub(crate) fn check_rrr(
        &self,
        size: Option<(u128, u128)>,
        items: usize,
        what: &str,
    ) -> Result<()> {
        let bytes = self.precision.bytes() as u128;
        let need = size.and_then(|(n, e)| memory::rrr_batch(n, e, items as u128, bytes));
        Ok(self.budget().check(need, what)?)
    }

    /// What a run may do with an output directory that holds files.
    pub(crate) fn out_mode(&self) -> OutMode {
        if given("resume") {
            OutMode::Continue
        } else if self.force {
            OutMode::Overwrite
        } else {
            OutMode::New
        }
    }

    /// The terminal voice of `--quiet`.
    pub(crate) fn voice(&self) -> Voice {
        if self.quiet {
            Voice::Quiet
        } else {
            Voice::Verbose
        }
    }

    /// Opens the backend the flags ask for.
    pub(crate) fn open(&self) -> Result<Backend> {
        let collective = super::distributed::collective();
        let req = GpuRequest {
            backend: self.backend,
            adapter: self.adapter.clone(),
            allow_software: false,
            // The ranks of one machine take its GPUs in turn, unless told.
            index: (collective.world() > 1 && self.adapter.is_none())
                .then(|| collective.local_rank()),
        };
        Ok(Backend::open(self.device, self.precision, &req)?.with_collective(collective))
    }

    /// What the data loaders accept in this run's precision.
    pub(crate) fn limits(&self) -> Limits {
        Limits::for_precision(self.precision)
    }
}

pub(crate) fn check_positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Input(format!("--{name} must be a positive number, got {v}")).into());
    }
    Ok(())
}

pub(crate) fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Input(format!("--image-shape '{s}' is not HxW (e.g. 40x40)"));
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w): (usize, usize) = (
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 {
        return Err(bad().into());
    }
    // Larger images than any data file could hold (and a product that
    // would overflow) are refused here, before any size is computed.
    if h.checked_mul(w).is_none_or(|n| n > u32::MAX as usize) {
        return Err(Error::Input(format!("--image-shape '{s}': more than 2^32 pixels")).into());
    }
    Ok((h, w))
}

pub(crate) fn image_shape(flag: Option<&str>) -> Result<Option<(usize, usize)>> {
    flag.map(parse_shape).transpose()
}

pub(crate) fn widths_list(flag: &str, what: &str) -> Result<Vec<usize>> {
    if flag.trim().is_empty() {
        return Ok(vec![]);
    }
    flag.split(',')
        .map(str::trim)
        .map(|t| {
            t.parse::<usize>().ok().filter(|&w| w > 0).ok_or_else(|| {
                Error::Input(format!("{what}: '{t}' is not a positive width")).into()
            })
        })
        .collect()
}

/// An item count or a percentage of the batch ("5", "0.5%").
pub(crate) fn parse_budget(flag: &str, v: Option<&str>, batch: usize) -> Result<usize> {
    let Some(v) = v else { return Ok(0) };
    let bad = || Error::Input(format!("--{flag} '{v}' is not a count or a percentage"));
    if let Some(p) = v.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad().into());
        }
        let n = (p / 100.0 * batch as f64).round() as usize;
        if n >= batch {
            return Err(Error::Input(format!(
                "--{flag} {v} is {n} items: it must be below the batch size {batch}"
            ))
            .into());
        }
        return Ok(n);
    }
    let n: usize = v.trim().parse().map_err(|_| bad())?;
    if n >= batch {
        return Err(
            Error::Input(format!("--{flag} {n} must be below the batch size {batch}")).into(),
        );
    }
    Ok(n)
}

pub(crate) fn load_labeled(
    path: &std::path::Path,
    format: LabeledFormat,
    labels: Option<&PathBuf>,
    precision: Precision,
) -> Result<Labeled> {
    let limits = Limits::for_precision(precision);
    let labels = labels.map(PathBuf::as_path);
    Ok(labeled::load(path, format, labels, &limits)?)
}

/// `--split F`: a seeded held-out fraction of the training data (the same
/// items for `rrr classify` and `sgd` with the same seed).
pub(crate) fn split_held_out(
    train: &Labeled,
    have_test: bool,
    f: f64,
    seed: u64,
) -> Result<(Labeled, Option<Labeled>)> {
    if have_test {
        return Err(Error::Input("--split and --test exclude each other".into()).into());
    }
    if !(f > 0.0 && f < 1.0) {
        return Err(Error::Input(format!("--split must be in (0, 1), got {f}")).into());
    }
    let (rest, held) = train.hold_out(f, seed);
    Ok((rest, Some(held)))
}

/// The bytes of DIR/checkpoint.safetensors and its name for messages
/// (`--resume DIR`).
pub(crate) fn read_checkpoint(dir: &std::path::Path) -> Result<(Vec<u8>, String)> {
    let path = dir.join("checkpoint.safetensors");
    let bytes = super::distributed::read_on_root(&path)?;
    Ok((bytes, path.display().to_string()))
}

/// `--time-limit S`: a finite number of seconds, at least 0.
pub(crate) fn check_time_limit(t: Option<f64>) -> Result<()> {
    match t {
        Some(s) if !(s.is_finite() && s >= 0.0) => Err(Error::Input(format!(
            "--time-limit must be a number of seconds ≥ 0, got {s}"
        ))
        .into()),
        _ => Ok(()),
    }
}

/// The batch size `--batch` asks for, at most the number of training
/// items (said when it is cut, so that the summary's batch is the one run).
pub(crate) fn effective_batch(batch: usize, items: usize) -> usize {
    if batch > items && items > 0 {
        println!("--batch {batch} exceeds the {items} training items: batches of {items}");
        items
    } else {
        batch
    }
}

/// A size in bytes: a number with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("'{s}': use a number with K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 16G or 512M"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("'{s}' is not a usable size"));
    }
    Ok(bytes as u64)
}
