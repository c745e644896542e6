//! `gradfree rrr nmf`: exact NMF of the LEDM and online NMF of data.

use super::common::{
    CommonArgs, Contradictions, check_positive, check_time_limit, given, parse_shape,
    read_checkpoint, resumed_common,
};
use anyhow::Result;
use clap::Args;
use gradfree::data::matrix::{TableFormat, load_table, require_nonnegative};
use gradfree::methods::rrr::nmf::{self, OnlineSettings, SolveSettings};
use gradfree::train::memory;
use gradfree::{Error, Precision};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct NmfArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Factorize this non-negative data (one item per row: CSV, or the
    /// reference NMF format) online, in batches; without it, the LEDM.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Format of --data.
    #[arg(long, value_enum, default_value_t = TableFormat::Auto)]
    pub(crate) format: TableFormat,
    /// Items per batch (online mode).
    #[arg(long, default_value_t = 50)]
    pub(crate) batch: usize,
    /// Passes over the data (online mode).
    #[arg(long, default_value_t = 30)]
    pub(crate) epochs: usize,
    /// RRR iterations per batch (online mode).
    #[arg(long, default_value_t = 4)]
    pub(crate) iters_per_batch: usize,
    /// Items are images of this shape (HxW): write features.png and reconstructions.png.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
    /// Online mode: stop after the epoch during which this many seconds
    /// have passed (the run goes on with `--resume`).
    #[arg(long)]
    pub(crate) time_limit: Option<f64>,
    /// Online mode: continue a stopped or killed run from
    /// DIR/checkpoint.safetensors (same data; the settings come from the
    /// checkpoint).
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// Factorize the m×m linear Euclidean distance matrix ((i−k)/(m−1))².
    #[arg(long, default_value_t = 6)]
    pub(crate) ledm: usize,
    /// Number of codes (default: the known nonnegative rank 5, 6, 7, 8 for m = 6, 8, 12, 16).
    #[arg(long)]
    pub(crate) rank: Option<usize>,
    /// RRR step β (default 0.3 for the LEDM, 1 for --data).
    #[arg(long)]
    pub(crate) beta: Option<f64>,
    /// Norm Ω of each code's weights (default: 0.6, 0.7, 0.8, 0.9 for LEDM m = 6, 8, 12, 16, else 1; 2 for --data).
    #[arg(long)]
    pub(crate) omega: Option<f64>,
    /// Independent random starts (seeds seed, seed+1, …).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    /// Starts solved together as one batched problem (0 = auto: all of them
    /// on a GPU, one at a time on the CPU).
    #[arg(long, default_value_t = 0)]
    pub(crate) parallel_runs: usize,
    /// Iteration cap per start (default: ten times the paper's mean work
    /// per solve of this m, e.g. 1.1 M iterations for m = 6, 15.9 M for m = 8).
    #[arg(long)]
    pub(crate) max_iter: Option<usize>,
    /// Success when RRR_err < tol (default 1e-8 in f64, 1e-5 in f32).
    #[arg(long)]
    pub(crate) tol: Option<f64>,
}

pub(crate) fn rrr_nmf(a: &NmfArgs) -> Result<()> {
    match &a.data {
        Some(path) => rrr_nmf_data(a, path),
        None => rrr_nmf_ledm(a),
    }
}

fn rrr_nmf_data(a: &NmfArgs, path: &std::path::Path) -> Result<()> {
    let resume = match &a.resume {
        Some(dir) => {
            let (bytes, what) = read_checkpoint(dir)?;
            Some(nmf::OnlineCheckpoint::from_bytes(&bytes, &what)?)
        }
        None => None,
    };
    let c = &resumed_common(
        &a.common,
        resume.as_ref().and_then(|r| r.provenance.precision),
    );
    check_time_limit(a.time_limit)?;
    let y = load_table(path, a.format, &c.limits())?;
    require_nonnegative(&y, path)?;
    let (n, d) = y.shape();
    let (rank, omega, s) = match &resume {
        Some(r) => resumed_online(a, r)?,
        None => {
            let rank = a
                .rank
                .ok_or_else(|| Error::Input("--rank is required with --data".into()))?;
            let s = OnlineSettings {
                batch: a.batch,
                epochs: a.epochs,
                iters_per_batch: a.iters_per_batch,
                beta: a.beta.unwrap_or(1.0),
                seed: c.seed,
            };
            (rank, a.omega.unwrap_or(2.0), s)
        }
    };
    if rank == 0 || rank > d || rank > n {
        return Err(Error::Input(format!(
            "--rank {rank} must be between 1 and the data's dimensions ({n} items × {d} columns)"
        ))
        .into());
    }
    check_positive("beta", s.beta)?;
    check_positive("omega", omega)?;
    let bytes = c.precision.bytes() as u128;
    let need = (|| {
        let e = memory::mul(&[rank, d])?;
        let batch = memory::rrr_batch((rank + d) as u128, e, s.batch.min(n) as u128, bytes)?;
        batch.checked_add(memory::table(n, rank.checked_add(d)?, 4)?)
    })();
    c.budget().check(need, "rrr nmf")?;
    let image_shape = a.image_shape.as_deref().map(parse_shape).transpose()?;
    if let Some((h, w)) = image_shape {
        if h * w != d {
            return Err(Error::Input(format!(
                "--image-shape {h}x{w} has {} pixels, the data {d} columns",
                h * w
            ))
            .into());
        }
    }
    let backend = c.open()?;
    let out = c.out.clone().or_else(|| a.resume.clone());
    let mut session = c.session_in(&backend, out.as_deref())?;
    let seed = s.seed;
    let run = nmf::OnlineRun {
        y,
        what: path.display().to_string(),
        rank,
        omega,
        settings: s,
        image_shape,
        time_limit: a.time_limit,
        resume,
    };
    if let Some(own) = nmf::run_online(&backend, &mut session, &run)? {
        session.finish(seed, own)?;
    }
    Ok(())
}

/// The rank, Ω and settings of a resumed online run: the checkpoint's, with
/// `--epochs` able to move the last epoch; other flags given must agree.
fn resumed_online(a: &NmfArgs, r: &nmf::OnlineCheckpoint) -> Result<(usize, f64, OnlineSettings)> {
    let s = &r.settings;
    let mut x = Contradictions::default();
    if let Some(rank) = a.rank {
        x.check("rank", rank, r.rank);
    }
    if let Some(beta) = a.beta {
        x.check("beta", beta, s.beta);
    }
    if let Some(omega) = a.omega {
        x.check("omega", omega, r.omega);
    }
    x.check("batch", a.batch, s.batch);
    x.check("iters_per_batch", a.iters_per_batch, s.iters_per_batch);
    x.check("seed", a.common.seed, s.seed);
    x.finish()?;
    let mut out = s.clone();
    if given("epochs") && a.epochs != s.epochs {
        if a.epochs < r.epoch {
            return Err(Error::Input(format!(
                "--epochs {}: the checkpoint has trained {} epochs already",
                a.epochs, r.epoch
            ))
            .into());
        }
        out.epochs = a.epochs;
    }
    Ok((r.rank, r.omega, out))
}

fn rrr_nmf_ledm(a: &NmfArgs) -> Result<()> {
    let m = a.ledm;
    if m < 2 {
        return Err(Error::Input(format!("--ledm must be at least 2, got {m}")).into());
    }
    let known = nmf::ledm_defaults(m);
    let rank = a
        .rank
        .or(known.map(|k| k.0))
        .ok_or_else(|| Error::Input(format!("--rank is required for --ledm {m}")))?;
    if rank > m {
        return Err(Error::Input(format!("--rank {rank} exceeds the matrix dimension {m}")).into());
    }
    let omega = a.omega.or(known.map(|k| k.1)).unwrap_or(1.0);
    let beta = a.beta.unwrap_or(0.3);
    check_positive("beta", beta)?;
    check_positive("omega", omega)?;
    let c = &a.common;
    let (starts, bytes) = (a.runs as u128, c.precision.bytes() as u128);
    let need = (|| {
        let nodes = starts.checked_mul((rank as u128).checked_add(m as u128)?)?;
        let edges = starts.checked_mul(memory::mul(&[rank, m])?)?;
        let batch = memory::rrr_batch(nodes, edges, m as u128, bytes)?;
        batch.checked_add(memory::table(m, m, 2)?)
    })();
    c.budget().check(need, "rrr nmf --ledm")?;
    let max_iter = a.max_iter.unwrap_or(nmf::ledm_default_cap(m, rank));
    if a.runs == 0 || max_iter == 0 {
        return Err(Error::Input("--runs and --max-iter must be at least 1".into()).into());
    }
    let c = &a.common;
    let tol = a.tol.unwrap_or(match c.precision {
        Precision::F64 => 1e-8,
        Precision::F32 => 1e-5,
    });
    check_positive("tol", tol)?;
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let run = nmf::LedmRun {
        m,
        rank,
        omega,
        runs: a.runs,
        parallel_runs: a.parallel_runs,
        seed: c.seed,
        solve: SolveSettings {
            beta,
            max_iter,
            tol,
            check_every: 64,
            chunk: 10_000,
        },
    };
    let own = nmf::run_ledm(&backend, &mut session, &run)?;
    session.finish(c.seed, own)?;
    Ok(())
}
