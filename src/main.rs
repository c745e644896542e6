//! The `gradfree` command line: parsing and printing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use gradfree::backend::{Backend, DeviceChoice};
use gradfree::gpu::{BackendChoice, GpuRequest, list_adapters};
use gradfree::meter::{Meter, SensorKind};
use gradfree::output::{Common as CommonSummary, NamedTensor, OutDir, Progress, safetensors_bytes};
use gradfree::rrr::nmf::{self, Nmf, SolveSettings};
use gradfree::{Error, Precision};
use serde_json::json;

/// Gradient-free neural-network training on GPUs (wgpu) and CPUs.
#[derive(Parser, Debug)]
#[command(name = "gradfree", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List GPU adapters (backend, type, driver, limits, features) and the CPU backend.
    Devices {
        /// Restrict to one graphics API.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// RRR ("Learning without loss"): training as constraint satisfaction.
    Rrr {
        #[command(subcommand)]
        task: RrrTask,
    },
}

#[derive(Subcommand, Debug)]
enum RrrTask {
    /// Exact non-negative matrix factorization by RRR.
    Nmf(NmfArgs),
}

/// Options every command that runs work takes.
#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Where to run: auto = a hardware GPU if present, else the CPU backend.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Graphics API for --device gpu|auto (else WGPU_BACKEND, else any).
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
    /// Adapter name substring (else WGPU_ADAPTER_NAME).
    #[arg(long)]
    adapter: Option<String>,
    /// Working precision: f32 or f64 (f64 on GPUs with SHADER_F64).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (metrics.jsonl, summary.json, ...), written atomically.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar and only the summary on the terminal.
    #[arg(long)]
    quiet: bool,
}

impl CommonArgs {
    fn open(&self) -> Result<Backend> {
        let req = GpuRequest {
            backend: self.backend,
            adapter: self.adapter.clone(),
            allow_software: false,
        };
        Ok(Backend::open(self.device, self.precision, &req)?)
    }
}

#[derive(Args, Debug)]
struct NmfArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Factorize the m×m linear Euclidean distance matrix ((i−k)/(m−1))².
    #[arg(long, default_value_t = 6)]
    ledm: usize,
    /// Number of codes (default: the known nonnegative rank 5, 6, 7, 8 for m = 6, 8, 12, 16).
    #[arg(long)]
    rank: Option<usize>,
    /// RRR step β.
    #[arg(long, default_value_t = 0.3)]
    beta: f64,
    /// Norm Ω of each code's weights (default: 0.6, 0.7, 0.8, 0.9 for m = 6, 8, 12, 16; else 1).
    #[arg(long)]
    omega: Option<f64>,
    /// Independent random starts (seeds seed, seed+1, …).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Iteration cap per start.
    #[arg(long, default_value_t = 1_000_000)]
    max_iter: usize,
    /// Success when RRR_err < tol (default 1e-8 in f64, 1e-5 in f32).
    #[arg(long)]
    tol: Option<f64>,
}

fn devices(backend: Option<BackendChoice>, as_json: bool) -> Result<()> {
    let adapters = list_adapters(backend);
    let cpu = json!({
        "name": "gradfree CPU backend (Rust + rayon)",
        "threads": rayon::current_num_threads(),
        "precisions": ["f32", "f64"],
    });
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "gpu": adapters, "cpu": cpu }))?
        );
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "GPU adapters: none found (install a Vulkan driver, e.g. `apt-get install -y mesa-vulkan-drivers libvulkan1` for lavapipe)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        let soft = if a.software {
            "  [software adapter]"
        } else {
            ""
        };
        println!(
            "gpu {i}: {} — {} {}{soft}",
            a.name, a.backend, a.device_type
        );
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!(
            "    features: f64 {}, timestamps {}, subgroups {}",
            yes(a.shader_f64),
            yes(a.timestamp_query),
            yes(a.subgroup)
        );
        println!(
            "    limits: storage binding {} MiB, buffer {} MiB, {} workgroups/dim, {} invocations/group, {} KiB shared, {} storage buffers/stage",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_storage_buffers_per_shader_stage
        );
    }
    println!(
        "cpu: gradfree CPU backend (Rust + rayon), {} threads, f32 and f64",
        rayon::current_num_threads()
    );
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn median(v: &mut [usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    })
}

fn rrr_nmf(a: &NmfArgs) -> Result<()> {
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
    for (name, v) in [("beta", a.beta), ("omega", omega)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(
                Error::Input(format!("--{name} must be a positive number, got {v}")).into(),
            );
        }
    }
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
        beta: a.beta,
        max_iter: a.max_iter,
        tol,
        check_every: 64,
        chunk: 10_000,
    };
    if !c.quiet {
        println!(
            "RRR NMF of LEDM m={m}, rank {rank}, β={}, Ω={omega}, tol {tol:e}, {} runs on {} ({})",
            a.beta,
            a.runs,
            backend.describe(),
            c.precision
        );
    }
    let kind = if backend.gpu_context().is_some() {
        SensorKind::Gpu
    } else {
        SensorKind::Cpu
    };
    let mut meter = Meter::start(kind);
    let mut results = vec![];
    let mut best = None;
    for run in 0..a.runs {
        let seed = c.seed + run as u64;
        let mut bar = Progress::new(a.max_iter as u64, c.quiet, &format!("run {}", run + 1));
        let r = nmf::solve(&backend, &problem, &y, seed, &settings, |i| {
            bar.set(i as u64)
        })?;
        bar.finish();
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
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": a.beta, "omega": omega, "tol": tol,
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
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": a.beta, "omega": omega,
            "seed": seed, "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
        });
        out.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { backend, json } => devices(backend, json),
        Command::Rrr {
            task: RrrTask::Nmf(a),
        } => rrr_nmf(&a).context("rrr nmf"),
    }
}

/// lavapipe prints an error line per adapter probe when XDG_RUNTIME_DIR is
/// unset; point it at a private directory before any thread starts.
fn quiet_software_adapter() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("gradfree-xdg-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            }
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

fn main() -> ExitCode {
    quiet_software_adapter();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(1, Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}
