//! `gradfree rrr nmf`: exact NMF of the LEDM and online NMF of data.

#[allow(unused_imports)]
use super::common::*;
#[allow(unused_imports)]
use super::*;
use anyhow::Result;
use clap::Args;
use gradfree::data::matrix::{TableFormat, load_table, require_nonnegative, to_csv};
use gradfree::io::{NamedTensor, png_grid, safetensors_bytes};
use gradfree::methods::rrr::nmf::{self, Nmf, OnlineSettings, SolveSettings};
use gradfree::train::meter::Meter;
use gradfree::train::report::{Common as CommonSummary, OutDir, Progress};
use gradfree::{Error, Precision};
use serde_json::json;
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

pub(crate) fn rrr_nmf_data(a: &NmfArgs, path: &std::path::Path) -> Result<()> {
    let c = &a.common;
    let y = load_table(path, a.format)?;
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
    let mut out = OutDir::new(c.out.as_deref())?;
    let problem = Nmf::new(rank, d, omega)?;
    let s = OnlineSettings {
        batch: a.batch,
        epochs: a.epochs,
        iters_per_batch: a.iters_per_batch,
        beta,
        seed: c.seed,
    };
    if !c.quiet {
        println!(
            "RRR NMF of {} ({n} items × {d}), rank {rank}, β={beta}, Ω={omega}, batches of {}, {} iterations per batch, {} epochs on {} ({})",
            path.display(),
            s.batch.min(n),
            s.iters_per_batch,
            s.epochs,
            backend.describe(),
            c.precision
        );
    }
    let mut meter = Meter::for_backend(&backend);
    let mut bar = Progress::new(s.epochs as u64, c.quiet, "epochs");
    let (w, stats) = nmf::train_online(&backend, &problem, &y, &s, |e| {
        meter.add_gwms(e.gwms);
        bar.set(e.epoch as u64);
        if !c.quiet {
            bar.suspend(|| {
                println!(
                    "epoch {:>3}/{}: recon_err {:.5}, RRR_err {:.4} → {:.4}, {:.4} GWMs, {:.2} s",
                    e.epoch,
                    s.epochs,
                    e.recon_err,
                    e.rrr_err_start,
                    e.rrr_err_end,
                    e.gwms,
                    e.seconds
                )
            });
        }
        out.metric(&serde_json::to_value(e).expect("epoch stats serialize"))
    })?;
    bar.finish();
    let codes = nmf::nnls_codes(&problem, &w, &y, 200)?;
    let m_ = meter.measure();
    let last = stats.last().map(|e| e.recon_err).unwrap_or(f64::NAN);
    println!("recon_err {last:.5} after {} epochs", stats.len());
    println!("{}", m_.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m_);
    out.summary(
        &common,
        json!({
            "method": "rrr nmf online", "data": path.display().to_string(), "items": n, "dim": d,
            "rank": rank, "beta": beta, "omega": omega, "batch": s.batch.min(n), "epochs": stats.len(),
            "iters_per_batch": s.iters_per_batch, "recon_err": last,
        }),
    )?;
    let tensors = [
        NamedTensor {
            name: "codes".into(),
            shape: vec![n, rank],
            data: codes.transpose().iter().copied().collect(),
        },
        NamedTensor {
            name: "weights".into(),
            shape: vec![rank, d],
            data: w.transpose().iter().copied().collect(),
        },
    ];
    let meta = json!({
        "method": "rrr nmf online", "rank": rank, "beta": beta, "omega": omega, "seed": c.seed,
        "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
    });
    out.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    out.file("weights.csv", to_csv(&w).as_bytes())?;
    out.file("codes.csv", to_csv(&codes).as_bytes())?;
    if let Some((h, wd)) = shape {
        let features: Vec<Vec<f64>> = (0..rank)
            .map(|i| w.row(i).iter().copied().collect())
            .collect();
        out.file("features.png", &png_grid(&features, h, wd, 8, true)?)?;
        let recon = &codes * &w;
        let sample = n.min(16);
        let mut imgs: Vec<Vec<f64>> = (0..sample)
            .map(|k| y.row(k).iter().copied().collect())
            .collect();
        imgs.extend((0..sample).map(|k| recon.row(k).iter().copied().collect::<Vec<_>>()));
        let top = y.max().max(1e-300);
        let imgs: Vec<Vec<f64>> = imgs
            .into_iter()
            .map(|v| v.iter().map(|x| x / top).collect())
            .collect();
        out.file(
            "reconstructions.png",
            &png_grid(&imgs, h, wd, sample, false)?,
        )?;
    }
    Ok(())
}

pub(crate) fn rrr_nmf_ledm(a: &NmfArgs) -> Result<()> {
    let m = a.ledm;
    if m < 2 {
        return Err(Error::Input(format!("--ledm must be at least 2, got {m}")).into());
    }
    let known = |m: usize| match m {
        6 => Some((5, 0.6)),
        8 => Some((6, 0.7)),
        12 => Some((7, 0.8)),
        16 => Some((8, 0.9)),
        _ => None,
    };
    let rank = a
        .rank
        .or(known(m).map(|k| k.0))
        .ok_or_else(|| Error::Input(format!("--rank is required for --ledm {m}")))?;
    if rank > m {
        return Err(Error::Input(format!("--rank {rank} exceeds the matrix dimension {m}")).into());
    }
    let omega = a.omega.or(known(m).map(|k| k.1)).unwrap_or(1.0);
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
    let mut out = OutDir::new(c.out.as_deref())?;
    let y = nmf::ledm(m);
    let problem = Nmf::new(rank, m, omega)?;
    let settings = SolveSettings {
        beta,
        max_iter: a.max_iter,
        tol,
        check_every: 64,
        chunk: 10_000,
    };
    if !c.quiet {
        println!(
            "RRR NMF of LEDM m={m}, rank {rank}, β={}, Ω={omega}, tol {tol:e}, {} runs on {} ({})",
            beta,
            a.runs,
            backend.describe(),
            c.precision
        );
    }
    let mut meter = Meter::for_backend(&backend);
    let mut results = vec![];
    let mut best = None;
    let per_batch = match a.parallel_runs {
        0 if backend.gpu_context().is_some() => a.runs,
        0 => 1,
        n => n.min(a.runs),
    };
    let seeds: Vec<u64> = (0..a.runs as u64).map(|r| c.seed + r).collect();
    let mut batch_results = vec![];
    for group in seeds.chunks(per_batch) {
        let mut bar = Progress::new(
            a.max_iter as u64,
            c.quiet,
            &format!("starts {}..", group[0]),
        );
        let rs = if group.len() == 1 {
            vec![nmf::solve(
                &backend,
                &problem,
                &y,
                group[0],
                &settings,
                |i| bar.set(i as u64),
            )?]
        } else {
            nmf::solve_batched(&backend, rank, omega, &y, group, &settings, |i| {
                bar.set(i as u64)
            })?
        };
        bar.finish();
        batch_results.extend(rs);
    }
    for (run, r) in batch_results.into_iter().enumerate() {
        let seed = r.seed;
        meter.add_gwms(r.gwms);
        if !c.quiet {
            println!(
                "run {:>3} (seed {seed}): {} after {} iterations, RRR_err {:.3e}, recon_err {:.3e}, {:.4} GWMs, {:.3} s{}",
                run + 1,
                if r.solved { "solved" } else { "NOT solved" },
                r.iterations,
                r.rrr_err,
                r.recon_err,
                r.gwms,
                r.seconds,
                if r.degenerate > 0 {
                    format!(", {} degenerate projections", r.degenerate)
                } else {
                    String::new()
                }
            );
        }
        let stride = (r.series.len() / 1000).max(1);
        let series: Vec<f64> = r.series.iter().step_by(stride).copied().collect();
        out.metric(&json!({
            "run": run + 1, "seed": seed, "solved": r.solved, "iterations": r.iterations,
            "rrr_err": r.rrr_err, "recon_err": r.recon_err, "gwms": r.gwms, "seconds": r.seconds,
            "degenerate": r.degenerate, "rrr_err_series_stride": stride, "rrr_err_series": series,
        }))?;
        if r.solved || results.iter().all(|p: &nmf::RunResult| !p.solved) {
            best = Some((r.x.clone(), r.w.clone(), seed));
        }
        results.push(r);
    }
    let m_ = meter.measure();
    let solved: Vec<_> = results.iter().filter(|r| r.solved).collect();
    let mut its: Vec<usize> = solved.iter().map(|r| r.iterations).collect();
    let mean = (!its.is_empty()).then(|| its.iter().sum::<usize>() as f64 / its.len() as f64);
    let med = median(&mut its);
    println!(
        "solved {}/{} ({:.0}%); iterations of solved runs: median {}, mean {}",
        solved.len(),
        results.len(),
        100.0 * solved.len() as f64 / results.len() as f64,
        med.map_or("-".into(), |v| format!("{v:.0}")),
        mean.map_or("-".into(), |v| format!("{v:.0}"))
    );
    println!("{}", m_.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m_);
    out.summary(
        &common,
        json!({
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": beta, "omega": omega, "tol": tol,
            "max_iter": a.max_iter, "runs": results.len(), "solved": solved.len(),
            "success_rate": solved.len() as f64 / results.len() as f64,
            "median_iterations": med, "mean_iterations": mean,
        }),
    )?;
    if let Some((x, w, seed)) = best {
        // The factors of the last solved run (or of the last run when none solved).
        let tensors = [
            NamedTensor {
                name: "codes".into(),
                shape: vec![x.nrows(), x.ncols()],
                data: x.transpose().iter().copied().collect(),
            },
            NamedTensor {
                name: "weights".into(),
                shape: vec![w.nrows(), w.ncols()],
                data: w.transpose().iter().copied().collect(),
            },
        ];
        let meta = json!({
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": beta, "omega": omega,
            "seed": seed, "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
        });
        out.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    }
    Ok(())
}
