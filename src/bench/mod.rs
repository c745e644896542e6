//! `gradfree bench`: a fixed, seeded suite of workloads ([`Workload`]: a
//! typed [`Job`] for one of the methods' library runs), run on every
//! selected device in turn, each in a child `gradfree` process (so every
//! workload is measured exactly as its own command measures itself: GWMs,
//! wall seconds, energy where a sensor is readable, peak resident memory).
//!
//! The suite's data are generated here, seeded, into the bench's work
//! directory: majority-gate circuits, MNIST-shaped random images (IDX),
//! spirals. `bench.json` (schema [`SCHEMA`], checked by [`validate`]) holds
//! one row per (workload, device); [`markdown`] renders it for the README
//! and [`compare`] prints ratios against an earlier `bench.json`.

mod suite;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::real::Precision;

pub use suite::{
    HSIC_SCALE_FOLDS, HSIC_SCALE_ITEMS, Job, WorkerSpec, Workload, execute, workloads, write_data,
};

/// `bench.json`'s schema tag.
pub const SCHEMA: &str = "gradfree-bench/1";

/// Suite size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    /// Seconds per workload: for CI and smoke tests.
    Quick,
    /// The papers' sizes (minutes per workload on a CPU).
    Paper,
    /// HSIC at n = 2,000 to 20,000: one fold of a 10-fold cross-validation
    /// of W_s and W* on Gaussian mixtures (10 features, 10 classes); the
    /// table reports seconds per ISM iteration and how they grow with n.
    HsicScale,
}

impl Suite {
    /// The name on the command line and in bench.json.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Quick => "quick",
            Suite::Paper => "paper",
            Suite::HsicScale => "hsic-scale",
        }
    }
}

/// One (workload, device) result.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// `cpu` or `gpu` (the selection) and the device description.
    pub device: String,
    /// Device in words (from the run's summary).
    pub device_name: String,
    /// "ok" or "failed: …".
    pub status: String,
    /// Giga-weight-multiplies.
    pub gwms: Option<f64>,
    /// Wall seconds.
    pub seconds: Option<f64>,
    /// GWMs per second.
    pub gwms_per_s: Option<f64>,
    /// Joules, when a sensor was read.
    pub joules: Option<f64>,
    /// GWMs per joule, when a sensor was read.
    pub gwms_per_joule: Option<f64>,
    /// Sensor used, or why energy is unavailable.
    pub energy_note: String,
    /// Peak resident memory of the run (bytes, Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Modelled bytes moved per second (GB/s), where modelled.
    pub bandwidth_gbs: Option<f64>,
    /// That as a fraction of the same run's copy-kernel bandwidth.
    pub bandwidth_fraction: Option<f64>,
    /// Final test error of classifier runs (RRR and SGD).
    #[serde(default)]
    pub test_err: Option<f64>,
    /// GPU RRR rows: queue submits per iteration.
    #[serde(default)]
    pub submits_per_iteration: Option<f64>,
    /// GPU RRR rows: compute dispatches per iteration.
    #[serde(default)]
    pub dispatches_per_iteration: Option<f64>,
    /// GPU RRR rows: modelled device traffic per (item, edge) and iteration, bytes.
    #[serde(default)]
    pub bytes_per_item_edge: Option<f64>,
    /// RRR classifier rows: whether batches started from feed passes on
    /// the device (the training set kept there) rather than on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_start_on_device: Option<bool>,
    /// GPU rows of a profiled bench: device time per kernel, longest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<crate::gpu::KernelTime>>,
    /// Why a profiled GPU row has no kernel times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_note: Option<String>,
    /// HSIC fold rows: the fold's items (training and test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// HSIC fold rows: layers of the fitted network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// W* rows: ISM iterations over all layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ism_iterations: Option<usize>,
    /// W* rows: layers that stopped at the iteration cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_at_cap: Option<usize>,
    /// W* rows: wall seconds per ISM iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s_per_iteration: Option<f64>,
}

impl Row {
    /// A row with a status and no measurements.
    pub fn empty(workload: &str, device: &str, status: String) -> Row {
        Row {
            workload: workload.into(),
            device: device.into(),
            device_name: String::new(),
            status,
            gwms: None,
            seconds: None,
            gwms_per_s: None,
            joules: None,
            gwms_per_joule: None,
            energy_note: String::new(),
            peak_rss_bytes: None,
            bandwidth_gbs: None,
            bandwidth_fraction: None,
            test_err: None,
            submits_per_iteration: None,
            dispatches_per_iteration: None,
            bytes_per_item_edge: None,
            batches_start_on_device: None,
            kernels: None,
            profile_note: None,
            items: None,
            layers: None,
            ism_iterations: None,
            layers_at_cap: None,
            s_per_iteration: None,
        }
    }
}

/// `bench.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// quick or paper.
    pub suite: String,
    /// f32 or f64.
    pub precision: String,
    /// Copy-kernel bandwidth per device selection (GB/s, read + write).
    pub copy_gbs: std::collections::BTreeMap<String, f64>,
    /// One row per (workload, device).
    pub rows: Vec<Row>,
}

/// Runs one workload on `device` as a child process of the `gradfree`
/// executable `exe` (its hidden `bench-worker` command, which runs the
/// workload's library run in-process), so that its wall time, energy and
/// peak memory are its own; the run's outputs go to `out`.
pub fn run_one(
    exe: &Path,
    w: &Workload,
    spec: &WorkerSpec,
    device: &str,
    out: &Path,
    copy_gbs: Option<f64>,
) -> Row {
    let mut args: Vec<String> = vec![
        "bench-worker".into(),
        "--suite".into(),
        spec.suite.name().into(),
        "--data".into(),
        spec.data.display().to_string(),
        "--workload".into(),
        w.name.clone(),
        "--device".into(),
        device.into(),
        "--precision".into(),
        spec.precision.to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(m) = &spec.mnist {
        args.push("--mnist".into());
        args.push(m.display().to_string());
    }
    if spec.profile && device == "gpu" {
        args.push("--profile".into());
    }
    let failed = |why: String| Row::empty(&w.name, device, format!("failed: {why}"));
    let res = std::process::Command::new(exe).args(&args).output();
    let o = match res {
        Ok(o) => o,
        Err(e) => return failed(format!("cannot start {}: {e}", exe.display())),
    };
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return failed(format!("exit {:?}: {last}", o.status.code()));
    }
    let text = match std::fs::read_to_string(out.join("summary.json")) {
        Ok(t) => t,
        Err(e) => return failed(format!("no summary.json: {e}")),
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return failed(format!("summary.json: {e}")),
    };
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let count = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|c| c as usize);
    let gwms_per_s = num("gwms_per_s");
    // A GPU RRR row's own traffic model (its engine's step) where it has one.
    let bytes_per_wm = num("bytes_per_item_edge").or(w.bytes_per_wm);
    let bandwidth_gbs = match (bytes_per_wm, gwms_per_s) {
        (Some(b), Some(g)) => Some(b * g),
        _ => None,
    };
    Row {
        workload: w.name.clone(),
        device: device.into(),
        device_name: v["device"].as_str().unwrap_or("").into(),
        status: "ok".into(),
        gwms: num("gwms"),
        seconds: num("seconds"),
        gwms_per_s,
        joules: num("joules"),
        gwms_per_joule: num("gwms_per_joule"),
        energy_note: v["energy_note"].as_str().unwrap_or("").into(),
        peak_rss_bytes: v.get("peak_rss_bytes").and_then(|x| x.as_u64()),
        bandwidth_gbs,
        bandwidth_fraction: match (bandwidth_gbs, copy_gbs) {
            (Some(b), Some(c)) if c > 0.0 => Some(b / c),
            _ => None,
        },
        test_err: num("test_err"),
        submits_per_iteration: num("submits_per_iteration"),
        dispatches_per_iteration: num("dispatches_per_iteration"),
        bytes_per_item_edge: num("bytes_per_item_edge"),
        batches_start_on_device: v.get("batches_start_on_device").and_then(|b| b.as_bool()),
        kernels: v
            .get("kernel_profile")
            .and_then(|k| serde_json::from_value(k.clone()).ok()),
        profile_note: v
            .get("profile_note")
            .and_then(|n| n.as_str())
            .map(String::from),
        items: count("items"),
        layers: count("fold_layers"),
        ism_iterations: count("ism_iterations"),
        layers_at_cap: count("layers_at_cap"),
        s_per_iteration: num("s_per_iteration"),
    }
}

/// Pairs of workloads compared as test error against cumulative GWMs.
pub const CURVES: &[(&str, &str, &str)] = &[
    ("maj13", "rrr-classify-maj13", "sgd-maj13"),
    ("784-20-10", "rrr-classify-784-20-10", "sgd-784-20-10"),
];

/// CPU copy bandwidth (GB/s, bytes read + written) over a 64 MiB buffer,
/// the best of three (the CPU's roofline for the bandwidth column).
pub fn cpu_copy_gbs() -> f64 {
    let n = 16 << 20;
    let src: Vec<u32> = (0..n as u32).collect();
    let mut dst = vec![0u32; n];
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        crate::kernels::copy::run(&src, &mut dst);
        let s = t.elapsed().as_secs_f64();
        best = best.max(8.0 * n as f64 / s / 1e9);
    }
    std::hint::black_box(&dst);
    best
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |x| format!("{x:.digits$}"))
}

/// The rows as a markdown table (README-ready).
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Suite `{}`, {} ({}).\n\n| workload | device | status | GWMs | s | GWMs/s | J | GWMs/J | peak RSS MiB | GB/s (× copy) | test err | submits / dispatches per it. |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        r.suite,
        r.precision,
        r.copy_gbs
            .iter()
            .map(|(d, g)| format!("{d} copy {g:.1} GB/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for w in &r.rows {
        let bw = match (w.bandwidth_gbs, w.bandwidth_fraction) {
            (Some(b), Some(f)) => format!("{b:.2} ({f:.3})"),
            (Some(b), None) => format!("{b:.2}"),
            _ => "—".into(),
        };
        let dev = if w.device_name.is_empty() {
            w.device.clone()
        } else {
            w.device_name.clone()
        };
        let work = match (w.submits_per_iteration, w.dispatches_per_iteration) {
            (Some(a), Some(b)) => format!("{a:.3} / {b:.1}"),
            _ => "—".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            w.workload,
            dev,
            w.status,
            opt(w.gwms, 4),
            opt(w.seconds, 2),
            opt(w.gwms_per_s, 4),
            opt(w.joules, 1),
            opt(w.gwms_per_joule, 4),
            w.peak_rss_bytes
                .map_or("—".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
            bw,
            opt(w.test_err, 4),
            work
        );
    }
    let notes: Vec<&str> = r
        .rows
        .iter()
        .filter(|w| w.status == "ok" && w.joules.is_none())
        .map(|w| w.energy_note.as_str())
        .collect();
    if let Some(n) = notes.first() {
        s += &format!("\nEnergy: {n}\n");
    }
    for w in &r.rows {
        s += &kernel_table(w);
    }
    s += &hsic_scale_table(&r.rows);
    s
}

/// The HSIC fold rows (those with a layer count) as a table, and how the
/// seconds per ISM iteration grow with n for each solver and device: the
/// exponent of n between successive sizes (2 is the n² of the products).
fn hsic_scale_table(rows: &[Row]) -> String {
    let hsic: Vec<&Row> = rows.iter().filter(|w| w.layers.is_some()).collect();
    if hsic.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n| workload | device | n | layers | ISM iterations (layers at the cap) | s per ISM iteration | s per fold | test acc | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for w in &hsic {
        let its = match (w.ism_iterations, w.layers_at_cap) {
            (Some(i), Some(c)) => format!("{i} ({c})"),
            _ => "—".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {its} | {} | {} | {} | {} |\n",
            w.workload,
            w.device,
            w.items.map_or("—".into(), |n| n.to_string()),
            w.layers.map_or("—".into(), |l| l.to_string()),
            opt(w.s_per_iteration, 4),
            opt(w.seconds, 1),
            opt(w.test_err.map(|e| 1.0 - e), 4),
            w.peak_rss_bytes
                .map_or("—".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
        );
    }
    // Rows of one solver and device differ only in their size suffix.
    let family = |w: &Row| {
        let stem = w.workload.rsplit_once('-').map_or("", |(a, _)| a);
        format!("{stem} on {}", w.device)
    };
    let mut families: Vec<String> = vec![];
    for w in &hsic {
        if !families.contains(&family(w)) {
            families.push(family(w));
        }
    }
    for f in families {
        let of = |g: fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
            hsic.iter()
                .filter(|w| family(w) == f)
                .filter_map(|w| Some((w.items? as f64, g(w)?)))
                .filter(|&(_, t)| t > 0.0)
                .collect()
        };
        for (what, pts) in [
            ("s per ISM iteration", of(|w| w.s_per_iteration)),
            ("s per fold", of(|w| w.seconds)),
        ] {
            let growth: Vec<String> = pts
                .windows(2)
                .map(|p| {
                    let e = (p[1].1 / p[0].1).ln() / (p[1].0 / p[0].0).ln();
                    format!("n^{e:.2} ({}→{})", p[0].0, p[1].0)
                })
                .collect();
            if !growth.is_empty() {
                s += &format!("\n{f}: {what} grows as {}\n", growth.join(", "));
            }
        }
    }
    s
}

/// A profiled row's device time per kernel (the ten longest), as markdown.
fn kernel_table(w: &Row) -> String {
    if let Some(n) = &w.profile_note {
        return format!("\n{} on {}: no kernel times ({n})\n", w.workload, w.device);
    }
    let Some(k) = &w.kernels else {
        return String::new();
    };
    let total: f64 = k.iter().map(|t| t.seconds).sum();
    let mut s = format!(
        "\n{} on {}: {:.3} s of device time in {} kernels\n\n| kernel | dispatches | s | share | µs per dispatch |\n|---|---|---|---|---|\n",
        w.workload,
        w.device,
        total,
        k.len()
    );
    for t in k.iter().take(10) {
        s += &format!(
            "| {} | {} | {:.3} | {:.1}% | {:.1} |\n",
            t.kernel,
            t.dispatches,
            t.seconds,
            100.0 * t.seconds / total.max(f64::MIN_POSITIVE),
            1e6 * t.seconds / t.dispatches.max(1) as f64
        );
    }
    s
}

/// Ratios of GWMs/s (new / old) for rows present in both reports.
pub fn compare(new: &Report, old: &Report) -> String {
    let mut s = String::from("workload | device | GWMs/s new | old | ratio\n");
    for r in &new.rows {
        let Some(o) = old
            .rows
            .iter()
            .find(|o| o.workload == r.workload && o.device == r.device)
        else {
            continue;
        };
        let ratio = match (r.gwms_per_s, o.gwms_per_s) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "—".into(),
        };
        s += &format!(
            "{} | {} | {} | {} | {ratio}\n",
            r.workload,
            r.device,
            opt(r.gwms_per_s, 4),
            opt(o.gwms_per_s, 4)
        );
    }
    s
}

/// Checks a parsed `bench.json` against the schema: the tag, the fields'
/// types, and that "ok" rows carry their measurements.
pub fn validate(v: &serde_json::Value) -> Result<Report> {
    let bad = |why: String| Error::Input(format!("bench.json: {why}"));
    if v.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
        return Err(bad(format!("schema is not {SCHEMA}")));
    }
    let r: Report = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
    for row in &r.rows {
        if row.status == "ok"
            && (row.gwms.is_none() || row.seconds.is_none() || row.gwms_per_s.is_none())
        {
            return Err(bad(format!(
                "row {} on {} is ok but lacks GWMs, seconds or GWMs/s",
                row.workload, row.device
            )));
        }
        if row.joules.is_some() != row.gwms_per_joule.is_some() && row.gwms.unwrap_or(0.0) > 0.0 {
            return Err(bad(format!(
                "row {} on {}: joules and GWMs/J must come together",
                row.workload, row.device
            )));
        }
    }
    Ok(r)
}

/// Reads and validates an earlier `bench.json`.
pub fn load(path: &Path) -> Result<Report> {
    let text = crate::io::read_text(path)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    validate(&v)
}

/// The work directory's path for one run's outputs.
pub fn run_dir(base: &Path, w: &Workload, device: &str) -> PathBuf {
    base.join("runs").join(format!("{}-{device}", w.name))
}

/// What `gradfree bench` runs.
#[derive(Clone, Debug)]
pub struct BenchRun {
    /// Suite size.
    pub suite: Suite,
    /// Devices in turn: `cpu`, `gpu`.
    pub devices: Vec<String>,
    /// Working precision of every workload.
    pub precision: Precision,
    /// Only the workloads of these names (all when empty).
    pub only: Vec<String>,
    /// The work directory: bench.json, bench.md, data and each run's outputs.
    pub base: PathBuf,
    /// Real images for the 784-20-10 pair (an absolute path).
    pub mnist: Option<PathBuf>,
    /// The `gradfree` executable that runs each workload.
    pub exe: PathBuf,
    /// Only the table on the terminal.
    pub quiet: bool,
    /// Formats of the RRR-against-SGD charts.
    pub formats: crate::plot::Formats,
    /// GPU time per kernel (timestamp queries) in every GPU row.
    pub profile: bool,
}

/// The devices' copy-kernel bandwidths (GB/s, read + write): the
/// rooflines of the bandwidth column.
pub fn copy_rooflines(devices: &[String]) -> Result<std::collections::BTreeMap<String, f64>> {
    let mut copy_gbs = std::collections::BTreeMap::new();
    for d in devices {
        let gbs = match d.as_str() {
            "cpu" => cpu_copy_gbs(),
            "gpu" => {
                let req = crate::gpu::GpuRequest {
                    allow_software: true,
                    ..Default::default()
                };
                let ctx = crate::gpu::GpuContext::open(&req, Precision::F32)?;
                let copy = crate::kernels::copy::PreparedCopy::new(&ctx, 64 << 20)?;
                copy.run(1)?;
                let mut best = 0.0f64;
                for _ in 0..3 {
                    let t = std::time::Instant::now();
                    copy.run(4)?;
                    best = best.max(8.0 * copy.bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
                }
                best
            }
            other => {
                return Err(Error::Input(format!("device '{other}' is not cpu or gpu")));
            }
        };
        copy_gbs.insert(d.clone(), gbs);
    }
    Ok(copy_gbs)
}

/// Runs the suite: writes its data, runs every workload on every device
/// (each in a child process), writes `bench.json`, `bench.md` and the RRR
/// against SGD curves; prints the table. Returns the report.
pub fn run(b: &BenchRun) -> Result<Report> {
    let say = |line: &str| {
        if !b.quiet {
            println!("{line}");
        }
    };
    let data = b.base.join("data");
    write_data(b.suite, &data)?;
    let prec_bytes = b.precision.bytes() as f64;
    let mut all = workloads(b.suite, &data, prec_bytes, b.mnist.as_deref());
    if !b.only.is_empty() {
        all.retain(|w| b.only.contains(&w.name));
    }
    let copy_gbs = copy_rooflines(&b.devices)?;
    let spec = WorkerSpec {
        suite: b.suite,
        data,
        mnist: b.mnist.clone(),
        precision: b.precision,
        profile: b.profile,
    };
    let mut rows = vec![];
    for d in &b.devices {
        for w in &all {
            say(&format!("{} on {d}: {}", w.name, w.what));
            let out = run_dir(&b.base, w, d);
            let row = run_one(&b.exe, w, &spec, d, &out, copy_gbs.get(d).copied());
            say(&format!("  {}", row.status));
            rows.push(row);
        }
    }
    let report = Report {
        schema: SCHEMA.into(),
        suite: b.suite.name().to_string(),
        precision: b.precision.to_string(),
        copy_gbs,
        rows,
    };
    Ok(report)
}

/// RRR against SGD, test error against cumulative GWMs, for every device
/// and pair of [`CURVES`] that both ran: `curves-<task>-<device>.png`
/// and/or `.svg` in the work directory; returns a line per pair.
pub fn curves(b: &BenchRun, report: &Report) -> Result<Vec<String>> {
    let all = workloads(b.suite, &b.base.join("data"), 4.0, b.mnist.as_deref());
    let mut lines = vec![];
    for d in &b.devices {
        for (task, rrr_w, sgd_w) in CURVES {
            let find = |n: &str| all.iter().find(|w| w.name == n);
            let (Some(rw), Some(sw)) = (find(rrr_w), find(sgd_w)) else {
                continue;
            };
            let get = |w: &Workload| {
                crate::plot::metrics_curve(
                    &run_dir(&b.base, w, d).join("metrics.jsonl"),
                    "gwms",
                    "test_err",
                )
            };
            let (Ok(r), Ok(s)) = (get(rw), get(sw)) else {
                continue;
            };
            let last = |c: &[(f64, f64)]| c[c.len() - 1];
            let ((rg, re), (sg, se)) = (last(&r), last(&s));
            let device = report
                .rows
                .iter()
                .find(|row| row.workload == *rrr_w && row.device == *d)
                .map_or(d.clone(), |row| row.device_name.clone());
            let chart = crate::plot::LineChart {
                title: format!("RRR against SGD on {task}: test error against work"),
                subtitle: format!(
                    "{device}, {}; gradfree bench --suite {}",
                    b.precision,
                    b.suite.name()
                ),
                x: crate::plot::Axis {
                    label: crate::plot::field_label("gwms", true),
                    log: true,
                },
                y: crate::plot::Axis {
                    label: crate::plot::field_label("test_err", false),
                    log: false,
                },
                series: vec![
                    crate::plot::Series {
                        name: format!("RRR ({rrr_w})"),
                        points: r,
                    },
                    crate::plot::Series {
                        name: format!("SGD ({sgd_w})"),
                        points: s,
                    },
                ],
            };
            let mut written = vec![];
            for f in b.formats.list() {
                let name = format!("curves-{task}-{d}.{}", f.ext());
                crate::io::write_atomic(
                    &b.base.join(&name),
                    &crate::plot::Figure::render(&chart, *f)?,
                )?;
                written.push(name);
            }
            lines.push(format!(
                "{task} on {d}: RRR test_err {re:.4} after {rg:.3} GWMs, SGD {se:.4} after {sg:.3} GWMs ({})",
                written.join(", ")
            ));
        }
    }
    Ok(lines)
}
