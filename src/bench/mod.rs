//! `gradfree bench`: a fixed, seeded suite of workloads, run on every
//! selected device in turn, each as a child `gradfree` process (so every
//! workload is measured exactly as its own command measures itself: GWMs,
//! wall seconds, energy where a sensor is readable, peak resident memory).
//!
//! The suite's data are generated here, seeded, into the bench's work
//! directory: majority-gate circuits, MNIST-shaped random images (IDX),
//! spirals. `bench.json` (schema [`SCHEMA`], checked by [`validate`]) holds
//! one row per (workload, device); [`markdown`] renders it for the README
//! and [`compare`] prints ratios against an earlier `bench.json`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `bench.json`'s schema tag.
pub const SCHEMA: &str = "gradfree-bench/1";

/// Suite size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Seconds per workload: for CI and smoke tests.
    Quick,
    /// The papers' sizes (minutes per workload on a CPU).
    Paper,
}

/// One workload: a `gradfree` command line (without device, precision,
/// output and quiet flags, which the runner adds).
#[derive(Clone, Debug)]
pub struct Workload {
    /// Row name.
    pub name: String,
    /// What it runs, in words.
    pub what: String,
    /// Arguments after `gradfree`.
    pub args: Vec<String>,
    /// Modelled bytes moved per weight-multiply, for the bandwidth column:
    /// RRR streams 10 elements per (item, edge) and iteration; the
    /// product-bound rows (SGD, StarNet, HSIC) are modelled as reading both
    /// operands of every multiply-add once (2 elements, no reuse), so a
    /// fraction of the copy bandwidth above 1 says how much they reuse
    /// caches, i.e. that they are compute-bound.
    pub bytes_per_wm: Option<f64>,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|t| t.to_string()).collect()
}

/// Writes the suite's data under `dir` and returns its workloads. `mnist`
/// (any image file the classifier reads, e.g. the reference's 10k zip)
/// replaces the generated images of the 784-20-10 pair, whose RRR and SGD
/// runs both hold out 20% for a test error either way (on the generated
/// images, whose labels are random, that error is chance: it shows the
/// path, not a result).
pub fn prepare(
    suite: Suite,
    dir: &Path,
    precision_bytes: f64,
    mnist: Option<&Path>,
) -> Result<Vec<Workload>> {
    use crate::data::majority::Circuit;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let quick = suite == Suite::Quick;
    let p = |name: &str| -> String { dir.join(name).display().to_string() };
    // Majority gates, depth 3 (the paper's maj13 task).
    let circuit = Circuit::random(13, 3, 3, 13, 1)?;
    let (train, test) = circuit.split(1);
    crate::io::write_atomic(&dir.join("maj_train"), train.to_lwl().as_bytes())?;
    crate::io::write_atomic(&dir.join("maj_test"), test.to_lwl().as_bytes())?;
    // MNIST-shaped random images with labels (IDX): 784-20-10 and StarNet.
    let (cls_images, images) = if quick {
        (1000, 1000)
    } else {
        (10_000, 60_000)
    };
    write_idx_images(dir, "cls", cls_images, 28, 7)?;
    let cls_data = match mnist {
        Some(m) => m.display().to_string(),
        None => p("cls-images-idx3-ubyte"),
    };
    // The 784-20-10 pair's common data, split and schedule.
    let cls_args = s(&[
        "--layers",
        "784,20,10",
        "--train",
        &cls_data,
        "--split",
        "0.2",
        "--batch",
        "1000",
        "--epochs",
        "1",
    ]);
    let cls_what = match mnist {
        Some(m) => format!("the images of {}", m.display()),
        None => format!("{cls_images} MNIST-shaped random images"),
    };
    write_idx_images(dir, "star", images, 28, 8)?;
    // Spirals for HSIC.
    let per_class = if quick { 100 } else { 500 };
    let sp = crate::data::spiral::spiral(per_class, 3, 0.05, 3);
    let mut csv = String::new();
    for k in 0..sp.len() {
        let row: Vec<String> = sp.item(k).iter().map(|v| format!("{v}")).collect();
        csv += &format!("{},{}\n", row.join(","), sp.y[k]);
    }
    crate::io::write_atomic(&dir.join("spiral.csv"), csv.as_bytes())?;
    let rrr_bytes = Some(10.0 * precision_bytes);
    let product_bytes = Some(2.0 * precision_bytes);
    let (nmf_runs, nmf_iter) = if quick {
        ("4", "3000")
    } else {
        ("20", "200000")
    };
    let maj_iters = if quick { "10" } else { "100" };
    let mnist_iters = if quick { "3" } else { "100" };
    let star_layers = if quick { "32" } else { "128,256" };
    Ok(vec![
        Workload {
            name: "rrr-nmf-ledm6".into(),
            what: format!("LEDM m=6 rank 5, {nmf_runs} starts, ≤{nmf_iter} iterations"),
            args: s(&[
                "rrr",
                "nmf",
                "--ledm",
                "6",
                "--rank",
                "5",
                "--beta",
                "0.3",
                "--omega",
                "0.6",
                "--runs",
                nmf_runs,
                "--max-iter",
                nmf_iter,
            ]),
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "rrr-classify-maj13".into(),
            what: format!(
                "13-26-26-2 on the 4096 majority training items, |K| 128, {maj_iters} iterations per batch, 1 epoch"
            ),
            args: s(&[
                "rrr",
                "classify",
                "--layers",
                "13,26,26,2",
                "--train",
                &p("maj_train"),
                "--test",
                &p("maj_test"),
                "--batch",
                "128",
                "--epochs",
                "1",
                "--iters-per-batch",
                maj_iters,
                "--beta",
                "1",
                "--omega",
                "2",
                "--upsilon",
                "1",
                "--margin",
                "0.1",
                "--seed",
                "1",
            ]),
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "rrr-classify-784-20-10".into(),
            what: format!(
                "784-20-10 on {cls_what} (80%; 20% held out), |K| 1000, {mnist_iters} iterations per batch, 1 epoch"
            ),
            args: [
                s(&["rrr", "classify"]),
                cls_args.clone(),
                s(&[
                    "--iters-per-batch",
                    mnist_iters,
                    "--exempt",
                    "0.5%",
                    "--margin",
                    "0.7",
                    "--seed",
                    "1",
                ]),
            ]
            .concat(),
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "sgd-maj13".into(),
            what: format!(
                "SGD baseline on 13-26-26-2, |K| 128, {} epochs (3 |K| |E| per step)",
                if quick { 2 } else { 40 }
            ),
            args: s(&[
                "sgd",
                "--layers",
                "13,26,26,2",
                "--train",
                &p("maj_train"),
                "--test",
                &p("maj_test"),
                "--batch",
                "128",
                "--epochs",
                if quick { "2" } else { "40" },
                "--lr",
                "1.0",
            ]),
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "sgd-784-20-10".into(),
            what: format!("SGD baseline on 784-20-10, {cls_what} (80/20), |K| 1000, 1 epoch"),
            args: [s(&["sgd"]), cls_args, s(&["--lr", "0.5"])].concat(),
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "starnet-epoch".into(),
            what: format!("one SL+SW epoch per layer, {images} × 784, latents {star_layers}"),
            args: s(&[
                "starnet",
                "train",
                "--data",
                &p("star-images-idx3-ubyte"),
                "--layers",
                star_layers,
                "--epochs",
                "1",
            ]),
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "hsic-ws".into(),
            what: format!("W_s fit on {} spiral points", 3 * per_class),
            args: s(&[
                "hsic",
                "fit",
                "--data",
                &p("spiral.csv"),
                "--name",
                "spiral",
                "--solver",
                "ws",
            ]),
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "hsic-ism".into(),
            what: format!("W* (ISM) fit on {} spiral points", 3 * per_class),
            args: s(&[
                "hsic",
                "fit",
                "--data",
                &p("spiral.csv"),
                "--name",
                "spiral",
                "--solver",
                "ism",
            ]),
            bytes_per_wm: product_bytes,
        },
    ])
}

/// Writes `DIR/NAME-images-idx3-ubyte` (n random side × side images, pixels
/// 0–255) and the matching labels (10 classes).
fn write_idx_images(dir: &Path, name: &str, n: usize, side: usize, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut img = vec![0u8, 0, 8, 3];
    for d in [n, side, side] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend((0..n * side * side).map(|_| rng.random::<u8>()));
    let mut lab = vec![0u8, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    lab.extend((0..n).map(|_| rng.random_range(0..10u8)));
    crate::io::write_atomic(&dir.join(format!("{name}-images-idx3-ubyte")), &img)?;
    crate::io::write_atomic(&dir.join(format!("{name}-labels-idx1-ubyte")), &lab)
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

/// Runs one workload on `device` with the `gradfree` executable `exe`;
/// the run's outputs go to `out`.
pub fn run_one(
    exe: &Path,
    w: &Workload,
    device: &str,
    precision: &str,
    out: &Path,
    copy_gbs: Option<f64>,
) -> Row {
    let mut args = w.args.clone();
    args.extend(s(&[
        "--device",
        device,
        "--precision",
        precision,
        "--quiet",
        "--out",
    ]));
    args.push(out.display().to_string());
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
    let gwms_per_s = num("gwms_per_s");
    let bandwidth_gbs = match (w.bytes_per_wm, gwms_per_s) {
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
    }
}

/// Pairs of workloads compared as test error against cumulative GWMs.
pub const CURVES: &[(&str, &str, &str)] = &[
    ("maj13", "rrr-classify-maj13", "sgd-maj13"),
    ("784-20-10", "rrr-classify-784-20-10", "sgd-784-20-10"),
];

/// (cumulative `x`, `y`) per line of a metrics.jsonl that has both fields.
pub fn curve(path: &Path, x: &str, y: &str) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let mut cum = 0.0;
    let mut pts = vec![];
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::Input(format!("{} line {}: {e}", path.display(), i + 1)))?;
        // Lines without both fields (other stages) are skipped.
        if let (Some(dx), Some(vy)) = (
            v.get(x).and_then(|t| t.as_f64()),
            v.get(y).and_then(|t| t.as_f64()),
        ) {
            cum += dx;
            pts.push((cum, vy));
        }
    }
    if pts.is_empty() {
        return Err(Error::Input(format!(
            "{}: no lines with both '{x}' and '{y}'",
            path.display()
        )));
    }
    Ok(pts)
}

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
        "Suite `{}`, {} ({}).\n\n| workload | device | status | GWMs | s | GWMs/s | J | GWMs/J | peak RSS MiB | GB/s (× copy) | test err |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
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
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
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
            opt(w.test_err, 4)
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    validate(&v)
}

/// The work directory's path for one run's outputs.
pub fn run_dir(base: &Path, w: &Workload, device: &str) -> PathBuf {
    base.join("runs").join(format!("{}-{device}", w.name))
}
