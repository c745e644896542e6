//! `gradfree bench`.

#[allow(unused_imports)]
use super::common::*;
#[allow(unused_imports)]
use super::*;
use anyhow::Result;
use clap::Args;
use gradfree::gpu::GpuRequest;
use gradfree::io::write_atomic;
use gradfree::{Error, Precision, io as output};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// quick (seconds per workload) or paper (the papers' sizes).
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
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    use gradfree::bench;
    let old = a.compare.as_deref().map(bench::load).transpose()?;
    let base = match &a.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gradfree-bench-{}", std::process::id())),
    };
    let prec_bytes = if a.precision == Precision::F64 {
        8.0
    } else {
        4.0
    };
    if let Some(m) = a.mnist.as_ref().filter(|m| !m.is_file()) {
        return Err(Error::Input(format!("--mnist: no file {}", m.display())).into());
    }
    // The child runs start elsewhere: give them an absolute path.
    let mnist = a
        .mnist
        .as_ref()
        .map(|m| std::path::absolute(m).unwrap_or(m.clone()));
    let mut workloads = bench::prepare(a.suite, &base.join("data"), prec_bytes, mnist.as_deref())?;
    if let Some(only) = &a.only {
        let names: Vec<&str> = only.split(',').map(str::trim).collect();
        if let Some(n) = names
            .iter()
            .find(|n| !workloads.iter().any(|w| w.name == **n))
        {
            return Err(Error::Input(format!("--only: no workload '{n}'")).into());
        }
        workloads.retain(|w| names.contains(&w.name.as_str()));
    }
    // Devices and their copy-kernel rooflines.
    let mut copy_gbs = std::collections::BTreeMap::new();
    let devices: Vec<String> = match &a.devices {
        Some(d) => d.split(',').map(|t| t.trim().to_string()).collect(),
        None => {
            let mut v = vec!["cpu".to_string()];
            let req = GpuRequest {
                allow_software: true,
                ..Default::default()
            };
            if gradfree::gpu::GpuContext::open(&req, Precision::F32).is_ok() {
                v.push("gpu".into());
            }
            v
        }
    };
    for d in &devices {
        match d.as_str() {
            "cpu" => {
                copy_gbs.insert("cpu".to_string(), bench::cpu_copy_gbs());
            }
            "gpu" => {
                let req = GpuRequest {
                    allow_software: true,
                    ..Default::default()
                };
                let ctx = gradfree::gpu::GpuContext::open(&req, Precision::F32)?;
                let copy = gradfree::kernels::copy::PreparedCopy::new(&ctx, 64 << 20)?;
                copy.run(1)?;
                let mut best = 0.0f64;
                for _ in 0..3 {
                    let t = std::time::Instant::now();
                    copy.run(4)?;
                    best = best.max(8.0 * copy.bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
                }
                copy_gbs.insert("gpu".to_string(), best);
            }
            other => {
                return Err(Error::Input(format!("--devices: '{other}' is not cpu or gpu")).into());
            }
        }
    }
    let exe = std::env::current_exe().map_err(|e| Error::Input(format!("own executable: {e}")))?;
    let mut rows = vec![];
    for d in &devices {
        for w in &workloads {
            if !a.quiet {
                println!("{} on {d}: {}", w.name, w.what);
            }
            let row = bench::run_one(
                &exe,
                w,
                d,
                &a.precision.to_string(),
                &bench::run_dir(&base, w, d),
                copy_gbs.get(d).copied(),
            );
            if !a.quiet {
                println!("  {}", row.status);
            }
            rows.push(row);
        }
    }
    let report = bench::Report {
        schema: bench::SCHEMA.into(),
        suite: format!("{:?}", a.suite).to_lowercase(),
        precision: a.precision.to_string(),
        copy_gbs,
        rows,
    };
    let md = bench::markdown(&report);
    println!("{md}");
    if let Some(o) = &old {
        println!("{}", bench::compare(&report, o));
    }
    // RRR against SGD: test error against cumulative GWMs, per device.
    for d in &devices {
        for (task, rrr_w, sgd_w) in bench::CURVES {
            let find = |n: &str| workloads.iter().find(|w| w.name == n);
            let (Some(rw), Some(sw)) = (find(rrr_w), find(sgd_w)) else {
                continue;
            };
            let get = |w: &bench::Workload| {
                bench::curve(
                    &bench::run_dir(&base, w, d).join("metrics.jsonl"),
                    "gwms",
                    "test_err",
                )
            };
            if let (Ok(r), Ok(s)) = (get(rw), get(sw)) {
                let last = |c: &[(f64, f64)]| c[c.len() - 1];
                let ((rg, re), (sg, se)) = (last(&r), last(&s));
                println!(
                    "{task} on {d}: RRR test_err {re:.4} after {rg:.3} GWMs, SGD {se:.4} after {sg:.3} GWMs (curves-{task}-{d}.png: RRR blue, SGD red)"
                );
                let png = output::line_plot(&[("RRR".into(), r), ("SGD".into(), s)], true)?;
                write_atomic(&base.join(format!("curves-{task}-{d}.png")), &png)?;
            }
        }
    }
    let json = serde_json::to_string_pretty(&report).expect("json");
    write_atomic(&base.join("bench.json"), json.as_bytes())?;
    write_atomic(&base.join("bench.md"), md.as_bytes())?;
    if a.out.is_none() {
        println!("wrote {}", base.display());
    }
    if report.rows.iter().any(|r| r.status.starts_with("failed")) {
        return Err(Error::Numeric("some workloads failed (see the table)".into()).into());
    }
    Ok(())
}
