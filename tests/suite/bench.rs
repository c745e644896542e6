//! `gradfree bench`: the quick suite end to end on both backends with a
//! fake RAPL tree (energy path), bench.json against its schema, --compare.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::{self, cli, gpu, output_text, temp_dir};
use gradfree::Precision;
use gradfree::bench::{self, SCHEMA};

/// A powercap tree with one package domain whose counter a thread advances
/// (10 mJ every 2 ms, written atomically) until `stop` is set.
fn fake_rapl(root: &std::path::Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let d = root.join("intel-rapl:0");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("energy_uj"), "0\n").unwrap();
    std::fs::write(d.join("max_energy_range_uj"), "1000000000000\n").unwrap();
    std::fs::write(d.join("name"), "package-0\n").unwrap();
    std::thread::spawn(move || {
        let mut e: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            e += 10_000;
            let tmp = d.join("energy_uj.tmp");
            std::fs::write(&tmp, format!("{e}\n")).unwrap();
            std::fs::rename(&tmp, d.join("energy_uj")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    })
}

#[test]
fn quick_suite_runs_on_both_backends_with_energy_from_a_fake_rapl_tree() {
    let dir = temp_dir("bench");
    let root = dir.join("powercap");
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = fake_rapl(&root, stop.clone());
    let devices = if gpu(Precision::F32).is_some() {
        "cpu,gpu"
    } else {
        "cpu"
    };
    let out = dir.join("out");
    let o = cli()
        .args([
            "bench",
            "--suite",
            "quick",
            "--devices",
            devices,
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .env("GRADFREE_POWERCAP_ROOT", &root)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    ticker.join().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let report = bench::validate(&v).unwrap();
    assert_eq!(report.schema, SCHEMA);
    assert_eq!(report.suite, "quick");
    let n_dev = devices.split(',').count();
    for d in devices.split(',') {
        assert!(report.copy_gbs[d] > 0.0, "{d}: copy bandwidth");
        let rows: Vec<_> = report.rows.iter().filter(|r| r.device == d).collect();
        assert_eq!(rows.len(), 8, "{d}: rows");
        for r in rows {
            assert_eq!(r.status, "ok", "{} on {d}", r.workload);
            assert!(r.gwms.unwrap() > 0.0 && r.seconds.unwrap() > 0.0);
            // The fake counter advanced while the run was measured.
            assert!(
                r.joules.unwrap() > 0.0,
                "{} on {d}: {}",
                r.workload,
                r.energy_note
            );
            assert!(r.gwms_per_joule.unwrap() > 0.0);
            assert!(r.energy_note.contains("RAPL"), "{}", r.energy_note);
            assert!(r.peak_rss_bytes.unwrap() > 0);
            // Every workload has a traffic model (streaming for RRR, two
            // operands per multiply-add for the product-bound ones).
            assert!(r.bandwidth_fraction.unwrap() > 0.0, "{}", r.workload);
            if r.workload.starts_with("sgd") || r.workload.starts_with("rrr-classify") {
                let e = r
                    .test_err
                    .unwrap_or_else(|| panic!("{}: no test error", r.workload));
                assert!((0.0..=1.0).contains(&e), "{}: {e}", r.workload);
            }
            if r.workload.starts_with("rrr-classify") {
                // The CPU and software adapters start batches on the host.
                assert_eq!(r.batches_start_on_device, Some(false), "{}", r.workload);
            }
        }
    }
    assert_eq!(report.rows.len(), 8 * n_dev);
    // RRR against SGD curves per device and task.
    for d in devices.split(',') {
        for task in ["maj13", "784-20-10"] {
            let png = std::fs::read(out.join(format!("curves-{task}-{d}.png"))).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{task} on {d}");
            let svg = std::fs::read_to_string(out.join(format!("curves-{task}-{d}.svg"))).unwrap();
            for text in [
                "cumulative GWMs",
                "test error",
                "RRR (rrr-classify-",
                "SGD (sgd-",
            ] {
                assert!(svg.contains(text), "{task} on {d}: no '{text}'");
            }
        }
    }
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(md.starts_with("Suite `quick`"));
    assert!(md.contains("| rrr-classify-maj13 |"));
    // --compare against the report just written: ratios of 1-ish, printed.
    let o = cli()
        .args([
            "bench",
            "--devices",
            "cpu",
            "--only",
            "hsic-ws",
            "--quiet",
            "--compare",
        ])
        .arg(out.join("bench.json"))
        .arg("--out")
        .arg(dir.join("again"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("hsic-ws | cpu |"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn bench_json_schema_rejects_malformed_reports() {
    let good = serde_json::json!({
        "schema": SCHEMA, "suite": "quick", "precision": "f32", "copy_gbs": {"cpu": 10.0},
        "rows": [{"workload": "w", "device": "cpu", "device_name": "cpu (2 threads)",
                  "status": "ok", "gwms": 1.0, "seconds": 2.0, "gwms_per_s": 0.5,
                  "joules": null, "gwms_per_joule": null, "energy_note": "unavailable",
                  "peak_rss_bytes": 1000, "bandwidth_gbs": null, "bandwidth_fraction": null}]
    });
    bench::validate(&good).unwrap();
    let mut wrong_tag = good.clone();
    wrong_tag["schema"] = "other/1".into();
    assert!(bench::validate(&wrong_tag).is_err());
    let mut missing = good.clone();
    missing["rows"][0]["gwms_per_s"] = serde_json::Value::Null;
    assert!(bench::validate(&missing).is_err());
    let mut half_energy = good.clone();
    half_energy["rows"][0]["joules"] = 3.0.into();
    assert!(bench::validate(&half_energy).is_err());
    let mut not_a_row = good.clone();
    not_a_row["rows"][0]["seconds"] = "fast".into();
    assert!(bench::validate(&not_a_row).is_err());
    // A bad --compare file is bad input (exit 2).
    let dir = temp_dir("bench_bad");
    let f = dir.join("old.json");
    std::fs::write(&f, "{\"schema\": \"nope\"}").unwrap();
    let o = support::run_cli(&[
        "bench",
        "--compare",
        f.to_str().unwrap(),
        "--devices",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// The SGD baseline: a step lowers the loss, and a separable problem is
/// learned on both backends.
#[test]
fn sgd_baseline_learns_a_separable_problem_on_both_backends() {
    use gradfree::data::labeled::Labeled;
    use gradfree::methods::sgd::{Sgd, SgdNet, SgdSettings};
    use gradfree::train::{self, Session, Start};
    // Two Gaussian-free clusters: class = [x0 + x1 > 1].
    let mut r = support::rng(4);
    let x = support::uniform(&mut r, 2 * 256, 0.0, 1.0);
    let y: Vec<u32> = x.chunks(2).map(|p| (p[0] + p[1] > 1.0) as u32).collect();
    let data = Labeled {
        dim: 2,
        classes: 2,
        x,
        y,
    };
    for (_, be) in support::backends_of(&[Precision::F64], &[Precision::F32]) {
        let mut net = SgdNet::random(&[2, 8, 2], 3).unwrap();
        let xb = &data.x[..64];
        let yb = &data.y[..32];
        let l0 = net.clone().step(&be, xb, yb, 0.0).unwrap();
        net.step(&be, xb, yb, 0.05).unwrap();
        let l1 = net.clone().step(&be, xb, yb, 0.0).unwrap();
        assert!(l1 < l0, "a small step lowers the loss: {l0} → {l1}");
        let s = SgdSettings {
            batch: 32,
            epochs: 200,
            lr: 0.5,
            seed: 1,
        };
        let mut sgd = Sgd::new(&be, net, &data, None, &s).unwrap();
        let mut session = Session::silent(&be).unwrap();
        let fin = train::run(&mut session, &mut sgd, Start::fresh()).unwrap();
        assert!(fin.history.iter().all(|e| e.gwms > 0.0));
        let last = fin.history.last().unwrap().train_err;
        assert!(last < 0.03, "train error {last}");
    }
}

#[test]
fn supplied_mnist_images_feed_the_784_20_10_pair() {
    let dir = temp_dir("bench-mnist");
    // 50 images (IDX) with labels beside them, as the classifier finds them.
    let n = 50usize;
    let mut img = vec![0u8, 0, 8, 3];
    for d in [n, 28, 28] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend((0..n * 784).map(|i| (i * 7 % 251) as u8));
    let mut lab = vec![0u8, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    lab.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join("tiny-images-idx3-ubyte"), img).unwrap();
    std::fs::write(dir.join("tiny-labels-idx1-ubyte"), lab).unwrap();
    let run = |mnist: &std::path::Path, out: &str| {
        cli()
            .args(["bench", "--devices", "cpu", "--quiet", "--only"])
            .arg("rrr-classify-784-20-10,sgd-784-20-10")
            .arg("--mnist")
            .arg(mnist)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap()
    };
    let o = run(&dir.join("tiny-images-idx3-ubyte"), "out");
    assert!(o.status.success(), "{}", output_text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/bench.json")).unwrap())
            .unwrap();
    let report = bench::validate(&v).unwrap();
    assert_eq!(report.rows.len(), 2);
    for r in &report.rows {
        assert_eq!(r.status, "ok", "{}", r.workload);
        // 40 of the 50 images train: |E| = 15,880 edges, 40 items per epoch.
        let per_pass = 15_880.0 * 40.0 / 1e9;
        let gwms = r.gwms.unwrap();
        // Whole passes over those 40 (iterations, or SGD's 3 products).
        let passes = gwms / per_pass;
        assert!(
            passes >= 1.0 && (passes - passes.round()).abs() < 1e-6,
            "{}: {gwms}",
            r.workload
        );
        assert!(r.test_err.is_some(), "{}", r.workload);
    }
    let o = run(&dir.join("missing"), "none");
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("--mnist"), "{}", output_text(&o));
}

/// The hsic-scale suite: its workloads, and the table's growth exponents.
#[test]
fn hsic_scale_rows_report_iteration_seconds_and_their_growth_in_n() {
    let names: Vec<String> = bench::workloads(
        bench::Suite::HsicScale,
        std::path::Path::new("d"),
        4.0,
        None,
    )
    .into_iter()
    .map(|w| w.name)
    .collect();
    for n in bench::HSIC_SCALE_ITEMS {
        for s in ["ws", "ism-dense", "ism-auto"] {
            assert!(names.contains(&format!("hsic-scale-{s}-{n}")), "{names:?}");
        }
    }
    let row = |n: usize, s: f64| bench::Row {
        items: Some(n),
        layers: Some(3),
        ism_iterations: Some(12),
        layers_at_cap: Some(0),
        s_per_iteration: Some(s),
        status: "ok".into(),
        seconds: Some(s * 100.0),
        gwms: Some(1.0),
        gwms_per_s: Some(1.0),
        ..bench::Row::empty(&format!("hsic-scale-ism-dense-{n}"), "cpu", String::new())
    };
    let report = bench::Report {
        schema: SCHEMA.into(),
        suite: "hsic-scale".into(),
        precision: "f32".into(),
        copy_gbs: Default::default(),
        rows: vec![row(1000, 0.01), row(2000, 0.04), row(4000, 0.08)],
    };
    let md = bench::markdown(&report);
    assert!(
        md.contains("| hsic-scale-ism-dense-2000 | cpu | 2000 | 3 | 12 (0) | 0.0400 |"),
        "{md}"
    );
    assert!(
        md.contains("hsic-scale-ism-dense on cpu: s per ISM iteration grows as n^2.00 (1000→2000), n^1.00 (2000→4000)"),
        "{md}"
    );
    assert_eq!(md.matches("s per ISM iteration grows").count(), 1, "{md}");
    assert!(
        md.contains("s per fold grows as n^2.00 (1000→2000)"),
        "{md}"
    );
    // Rows from before these fields still read.
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(bench::validate(&v).unwrap(), report);
}
