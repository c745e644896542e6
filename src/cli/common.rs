//! Options and parsing shared by the commands.

use anyhow::Result;
use clap::Args;
use gradfree::data::Limits;
use gradfree::data::labeled::{self, Labeled, LabeledFormat};
use gradfree::engine::{Backend, DeviceChoice};
use gradfree::gpu::{BackendChoice, GpuRequest};
use gradfree::train::{Session, Voice};
use gradfree::{Error, Precision};
use std::path::PathBuf;

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
        let voice = if self.quiet {
            Voice::Quiet
        } else {
            Voice::Verbose
        };
        Ok(Session::new(backend, out, voice)?)
    }

    /// Opens the backend the flags ask for.
    pub(crate) fn open(&self) -> Result<Backend> {
        let req = GpuRequest {
            backend: self.backend,
            adapter: self.adapter.clone(),
            allow_software: false,
        };
        Ok(Backend::open(self.device, self.precision, &req)?)
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
    let (h, w) = (
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 {
        return Err(bad().into());
    }
    Ok((h, w))
}

pub(crate) fn image_shape(flag: Option<&str>) -> Result<Option<(usize, usize)>> {
    flag.map(parse_shape).transpose()
}

pub(crate) fn widths_list(flag: &str, what: &str) -> Result<Vec<usize>> {
    flag.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
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
        return Ok((p / 100.0 * batch as f64).round() as usize);
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
    let bytes = gradfree::io::read_file(&path)?;
    Ok((bytes, path.display().to_string()))
}
