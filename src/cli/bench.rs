//! `gradfree bench`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use gradfree::bench;
use gradfree::data::labeled::LabeledFormat;
use gradfree::engine::{Backend, DeviceChoice};
use gradfree::gpu::GpuRequest;
use gradfree::io::write_atomic;
use gradfree::train::{OutMode, Session, Voice};
use gradfree::{Error, Precision};

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// quick (seconds per workload), paper (the papers' sizes) or
    /// hsic-scale (HSIC folds of 2,000 to 20,000 items).
    #[arg(long, value_enum, default_value_t = gradfree::bench::Suite::Quick)]
    pub(crate) suite: gradfree::bench::Suite,
    /// Devices to run on in turn, comma-separated: cpu, gpu (default: cpu,
    /// plus gpu when an adapter opens).
    #[arg(long)]
    pub(crate) devices: Option<String>,
    /// Working precision of every workload.
    #[arg(long, default_value = "f32")]
    pub(crate) precision: Precision,
    /// Only these workloads (comma-separated names).
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// Output directory: bench.json, bench.md, the suite's data and each run's outputs.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// An earlier bench.json: print GWMs/s ratios against it.
    #[arg(long)]
    pub(crate) compare: Option<PathBuf>,
    /// Real images for the 784-20-10 RRR and SGD workloads (IDX, .gz, or the
    /// reference's mnist_train_10k.zip) instead of generated ones, so their
    /// held-out test errors and curves mean something.
    #[arg(long)]
    pub(crate) mnist: Option<PathBuf>,
    /// Only the table on the terminal.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Formats of the RRR-against-SGD charts (curves-<task>-<device>.*).
    #[arg(long, value_enum, default_value_t = gradfree::plot::Formats::Both)]
    pub(crate) format: gradfree::plot::Formats,
    /// Device time per kernel in every GPU row, from timestamp queries
    /// (each dispatch then runs alone and is waited for: the rows' speed
    /// is not the unprofiled speed).
    #[arg(long)]
    pub(crate) profile: bool,
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    let old = a.compare.as_deref().map(bench::load).transpose()?;
    let base = match &a.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gradfree-bench-{}", std::process::id())),
    };
    check_mnist(a)?;
    let only: Vec<String> = a
        .only
        .iter()
        .flat_map(|o| o.split(',').map(|n| n.trim().to_string()))
        .collect();
    let names = bench::workloads(a.suite, &base, 4.0, None);
    if let Some(n) = only.iter().find(|n| !names.iter().any(|w| &w.name == *n)) {
        return Err(Error::Input(format!("--only: no workload '{n}'")).into());
    }
    let devices = devices(a)?;
    let run = bench::BenchRun {
        suite: a.suite,
        devices,
        precision: a.precision,
        only,
        // The child runs start elsewhere: give them an absolute path.
        mnist: a
            .mnist
            .as_ref()
            .map(|m| std::path::absolute(m).unwrap_or(m.clone())),
        base,
        exe: std::env::current_exe().map_err(|e| Error::Input(format!("own executable: {e}")))?,
        quiet: a.quiet,
        formats: a.format,
        profile: a.profile,
    };
    let report = bench::run(&run)?;
    let md = bench::markdown(&report);
    println!("{md}");
    if let Some(o) = &old {
        println!("{}", bench::compare(&report, o));
    }
    for line in bench::curves(&run, &report)? {
        println!("{line}");
    }
    let json = serde_json::to_string_pretty(&report).expect("json");
    write_atomic(&run.base.join("bench.json"), json.as_bytes())?;
    write_atomic(&run.base.join("bench.md"), md.as_bytes())?;
    if a.out.is_none() {
        println!("wrote {}", run.base.display());
    }
    if report.rows.iter().any(|r| r.status.starts_with("failed")) {
        return Err(Error::Numeric("some workloads failed (see the table)".into()).into());
    }
    Ok(())
}

/// Bad `--mnist` images are bad input here, not a failed row of every device.
fn check_mnist(a: &BenchArgs) -> Result<()> {
    let Some(m) = &a.mnist else {
        return Ok(());
    };
    if !m.is_file() {
        return Err(Error::Input(format!("--mnist: no file {}", m.display())).into());
    }
    let limits = gradfree::data::Limits::for_precision(a.precision);
    let images = gradfree::data::labeled::load(m, LabeledFormat::Auto, None, &limits)?;
    if images.dim != 784 {
        return Err(Error::Input(format!(
            "--mnist: {} holds items of {} values, not 28×28 images",
            m.display(),
            images.dim
        ))
        .into());
    }
    Ok(())
}

/// The devices to bench: `--devices`, or the CPU plus the GPU when an
/// adapter opens.
fn devices(a: &BenchArgs) -> Result<Vec<String>> {
    let devices: Vec<String> = match &a.devices {
        Some(d) => d.split(',').map(|t| t.trim().to_string()).collect(),
        None => {
            let req = GpuRequest {
                allow_software: true,
                ..Default::default()
            };
            let gpu = gradfree::gpu::GpuContext::open(&req, Precision::F32).is_ok();
            ["cpu", "gpu"][..1 + gpu as usize]
                .iter()
                .map(|d| d.to_string())
                .collect()
        }
    };
    if let Some(d) = devices
        .iter()
        .find(|d| !["cpu", "gpu"].contains(&d.as_str()))
    {
        return Err(Error::Input(format!("--devices: '{d}' is not cpu or gpu")).into());
    }
    Ok(devices)
}

/// One workload of `gradfree bench`, run in this process (the bench's
/// child process: its peak memory and energy are the workload's own).
#[derive(Args, Debug)]
pub(crate) struct BenchWorkerArgs {
    /// Suite size.
    #[arg(long, value_enum)]
    pub(crate) suite: bench::Suite,
    /// The suite's data directory.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Real images for the 784-20-10 pair.
    #[arg(long)]
    pub(crate) mnist: Option<PathBuf>,
    /// The workload's name.
    #[arg(long)]
    pub(crate) workload: String,
    /// cpu or gpu.
    #[arg(long, value_enum)]
    pub(crate) device: DeviceChoice,
    /// Working precision.
    #[arg(long)]
    pub(crate) precision: Precision,
    /// The run's output directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Device time per kernel into summary.json.
    #[arg(long)]
    pub(crate) profile: bool,
}

pub(crate) fn bench_worker(a: &BenchWorkerArgs) -> Result<()> {
    let prec_bytes = a.precision.bytes() as f64;
    let all = bench::workloads(a.suite, &a.data, prec_bytes, a.mnist.as_deref());
    let w = all
        .iter()
        .find(|w| w.name == a.workload)
        .ok_or_else(|| Error::Input(format!("no workload '{}'", a.workload)))?;
    if a.profile {
        gradfree::gpu::enable_profiling();
    }
    let backend = Backend::open(a.device, a.precision, &GpuRequest::default())?;
    let mut session = Session::new(&backend, Some(&a.out), OutMode::Overwrite, Voice::Quiet)?;
    let (seed, own) = bench::execute(&w.job, &backend, &mut session)?;
    session.finish(seed, own)?;
    Ok(())
}
