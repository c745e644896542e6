//! `gradfree rrr nmf`: exact NMF of the LEDM and online NMF of data.

use super::common::{CommonArgs, check_positive, parse_shape};
use anyhow::Result;
use clap::Args;
use gradfree::data::matrix::{TableFormat, load_table, require_nonnegative};
use gradfree::methods::rrr::nmf::{self, OnlineSettings, SolveSettings};
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
    /// Iteration cap per start.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) max_iter: usize,
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
    let c = &a.common;
    let y = load_table(path, a.format, &c.limits())?;
    require_nonnegative(&y, path)?;
    let (n, d) = y.shape();
    let rank = a
        .rank
        .ok_or_else(|| Error::Input("--rank is required with --data".into()))?;
    if rank == 0 || rank > d || rank > n {
        return Err(Error::Input(format!(
            "--rank {rank} must be between 1 and the data's dimensions ({n} items × {d} columns)"
        ))
        .into());
    }
    let beta = a.beta.unwrap_or(1.0);
    let omega = a.omega.unwrap_or(2.0);
    check_positive("beta", beta)?;
    check_positive("omega", omega)?;
    let shape = a.image_shape.as_deref().map(parse_shape).transpose()?;
    if let Some((h, w)) = shape {
        if h * w != d {
            return Err(Error::Input(format!(
                "--image-shape {h}x{w} has {} pixels, the data {d} columns",
                h * w
            ))
            .into());
        }
    }
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let s = OnlineSettings {
        batch: a.batch,
        epochs: a.epochs,
        iters_per_batch: a.iters_per_batch,
        beta,
        seed: c.seed,
    };
    let what = path.display().to_string();
    let own = nmf::run_online(&backend, &mut session, &y, &what, rank, omega, &s, shape)?;
    session.finish(c.seed, own)?;
    Ok(())
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
    if a.runs == 0 || a.max_iter == 0 {
        return Err(Error::Input("--runs and --max-iter must be at least 1".into()).into());
    }
    let c = &a.common;
    let tol = a.tol.unwrap_or(match c.precision {
        Precision::F64 => 1e-8,
        Precision::F32 => 1e-5,
    });
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
            max_iter: a.max_iter,
            tol,
            check_every: 64,
            chunk: 10_000,
        },
    };
    let own = nmf::run_ledm(&backend, &mut session, &run)?;
    session.finish(c.seed, own)?;
    Ok(())
}
