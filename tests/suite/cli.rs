//! The `gradfree` binary: help and version, exit codes (0 ok, 1 runtime
//! failure, 2 bad usage or input), the devices listing, and the outputs of a
//! run (summary.json common fields, metrics.jsonl, energy from a fake RAPL tree).

use crate::support::{cli, output_text, run_cli, skip_gpu_tests, temp_dir, temp_path};

#[test]
fn help_and_version() {
    for args in [
        &["--help"][..],
        &["devices", "--help"],
        &["rrr", "--help"],
        &["rrr", "nmf", "--help"],
    ] {
        let o = run_cli(args);
        assert!(o.status.success(), "{args:?}: {}", output_text(&o));
        assert!(output_text(&o).contains("Usage"), "{args:?}");
    }
    let o = run_cli(&["--version"]);
    assert!(o.status.success());
    assert!(output_text(&o).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_usage_and_bad_input_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["rrr", "nmf", "--beta", "abc"],
        &["rrr", "nmf", "--precision", "f16"],
        &[
            "rrr", "nmf", "--ledm", "6", "--rank", "9", "--device", "cpu",
        ],
        &["rrr", "nmf", "--ledm", "1", "--device", "cpu"],
        &["rrr", "nmf", "--ledm", "7", "--device", "cpu"],
        &["rrr", "nmf", "--omega", "-1", "--device", "cpu"],
        &["rrr", "nmf", "--beta", "NaN", "--device", "cpu"],
    ] {
        let o = run_cli(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", output_text(&o));
        assert!(!output_text(&o).contains("panicked"), "{args:?}");
    }
}

#[test]
fn missing_adapter_is_a_clean_runtime_failure() {
    // No Metal on Linux: no adapter can match.
    let o = cli()
        .args([
            "rrr",
            "nmf",
            "--device",
            "gpu",
            "--backend",
            "metal",
            "--runs",
            "1",
            "--max-iter",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let t = output_text(&o);
    assert!(
        t.contains("no GPU adapter") && t.contains("mesa-vulkan-drivers"),
        "{t}"
    );
    assert!(!t.contains("panicked"));
    let o = cli()
        .args([
            "rrr",
            "nmf",
            "--device",
            "gpu",
            "--adapter",
            "no-such-adapter-xyz",
            "--max-iter",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(output_text(&o).contains("no-such-adapter-xyz"));
}

#[test]
fn devices_lists_the_cpu_backend_and_valid_json() {
    let o = run_cli(&["devices"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("cpu: gradfree CPU backend"));
    let o = run_cli(&["devices", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["cpu"]["threads"].as_u64().unwrap() >= 1);
    assert!(v["gpu"].is_array());
    if !skip_gpu_tests() {
        // CI installs lavapipe: it must be listed, marked as software.
        let gpus = v["gpu"].as_array().unwrap();
        assert!(
            gpus.iter().any(|a| a["software"].as_bool() == Some(true)),
            "no software adapter listed: {v}"
        );
    }
}

#[test]
fn nmf_run_writes_summary_and_metrics_with_energy_from_rapl() {
    let out = temp_path("cli-nmf");
    let rapl = temp_path("cli-rapl");
    let dom = rapl.join("intel-rapl:0");
    std::fs::create_dir_all(&dom).unwrap();
    std::fs::write(dom.join("energy_uj"), "1000").unwrap();
    std::fs::write(dom.join("max_energy_range_uj"), "1000000000").unwrap();
    let o = cli()
        .env("GRADFREE_POWERCAP_ROOT", &rapl)
        .args([
            "rrr",
            "nmf",
            "--ledm",
            "6",
            "--device",
            "cpu",
            "--precision",
            "f64",
            "--runs",
            "2",
        ])
        .args(["--max-iter", "400000", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "device",
        "precision",
        "gwms",
        "seconds",
        "gwms_per_s",
        "joules",
        "gwms_per_joule",
        "energy_note",
    ] {
        assert!(s.get(key).is_some(), "summary.json lacks {key}: {s}");
    }
    assert_eq!(s["precision"], "f64");
    assert_eq!(s["runs"], 2);
    assert_eq!(s["solved"], 2, "{s}");
    assert!(s["median_iterations"].as_f64().unwrap() > 0.0);
    assert!(s["gwms"].as_f64().unwrap() > 0.0);
    // The fake counter did not move: 0 J measured, so GWMs/J is not defined.
    assert_eq!(s["joules"].as_f64(), Some(0.0));
    assert!(s["energy_note"].as_str().unwrap().contains("RAPL"));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["rrr_err_series"].as_array().unwrap().len() > 10);
    // The model: codes (6×5) and weights (5×6) whose product is the LEDM.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f = |name: &str| -> (Vec<usize>, Vec<f64>) {
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), v)
    };
    let (xs, x) = f("codes");
    let (ws, w) = f("weights");
    assert_eq!((xs, ws.clone()), (vec![6, 5], vec![5, 6]));
    for k in 0..6 {
        for j in 0..6 {
            let v: f64 = (0..5).map(|i| x[k * 5 + i] * w[i * 6 + j]).sum();
            let want = ((k as f64 - j as f64) / 5.0).powi(2);
            assert!((v - want).abs() < 1e-6, "({k},{j}): {v} vs {want}");
        }
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["gradfree"]).unwrap();
    assert_eq!(m["rank"], 5);
    // No temporary files left behind by the atomic writes.
    for e in std::fs::read_dir(&out).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(!n.contains(".tmp"), "leftover {n}");
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&rapl);
}

#[test]
fn energy_unavailable_says_why() {
    let o = cli()
        .env("GRADFREE_POWERCAP_ROOT", "/nonexistent-powercap")
        .args([
            "rrr",
            "nmf",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--max-iter",
            "100",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("energy: unavailable (no RAPL powercap"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn nmf_runs_on_the_gpu_backend() {
    if skip_gpu_tests() {
        return;
    }
    let o = run_cli(&[
        "rrr",
        "nmf",
        "--device",
        "gpu",
        "--runs",
        "1",
        "--max-iter",
        "300",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("GWMs/s"));
}

#[test]
fn letters_generator_and_online_nmf_outputs() {
    let dir = temp_path("cli-letters");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("letters.csv");
    let o = cli()
        .args(["data", "letters", "--count", "60", "--seed", "2", "--out"])
        .arg(&data)
        .arg("--preview")
        .arg(dir.join("preview.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = std::fs::read_to_string(&data).unwrap();
    assert_eq!(rows.lines().count(), 60);
    assert_eq!(rows.lines().next().unwrap().split(',').count(), 1600);
    let out = dir.join("run");
    let o = cli()
        .args([
            "rrr", "nmf", "--device", "cpu", "--rank", "16", "--batch", "30", "--epochs", "2",
        ])
        .args(["--image-shape", "40x40", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    for f in [
        "summary.json",
        "metrics.jsonl",
        "model.safetensors",
        "weights.csv",
        "codes.csv",
        "features.png",
        "reconstructions.png",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["epochs"], 2);
    assert!(s["recon_err"].as_f64().unwrap() > 0.0);
    let w = std::fs::read_to_string(out.join("weights.csv")).unwrap();
    assert_eq!(w.lines().count(), 16);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_nmf_data_exits_2() {
    let dir = temp_path("cli-baddata");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("negative.csv", "1,2\n3,-4\n", vec!["--rank", "1"]),
        ("nan.csv", "1,2\n3,nan\n", vec!["--rank", "1"]),
        ("empty.csv", "", vec!["--rank", "1"]),
        ("ragged.csv", "1,2\n3\n", vec!["--rank", "1"]),
        ("rank.csv", "1,2\n3,4\n", vec!["--rank", "3"]),
        ("norank.csv", "1,2\n3,4\n", vec![]),
        (
            "shape.csv",
            "1,2\n3,4\n",
            vec!["--rank", "1", "--image-shape", "3x3"],
        ),
        ("nmf.txt", "3\n1 2 3 4\n", vec!["--rank", "1"]),
    ];
    for (name, body, extra) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let o = cli()
            .args(["rrr", "nmf", "--device", "cpu", "--epochs", "1", "--data"])
            .arg(&p)
            .args(&extra)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{name}: {}", output_text(&o));
        assert!(!output_text(&o).contains("panicked"), "{name}");
    }
    let o = cli()
        .args([
            "rrr",
            "nmf",
            "--data",
            "/nonexistent/file.csv",
            "--rank",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_mixture_writes_features_and_labels_that_hsic_fit_reads() {
    let dir = temp_dir("data_mixture");
    let prefix = dir.join("m").display().to_string();
    let mixture = |out: &str| {
        run_cli(&[
            "data",
            "mixture",
            "--out",
            out,
            "--items",
            "90",
            "--features",
            "4",
            "--classes",
            "3",
        ])
    };
    let o = mixture(&prefix);
    assert!(o.status.success(), "{}", output_text(&o));
    let x = std::fs::read_to_string(format!("{prefix}_x.csv")).unwrap();
    let y = std::fs::read_to_string(format!("{prefix}_y.csv")).unwrap();
    assert_eq!(x.lines().count(), 90);
    assert!(x.lines().all(|l| l.split(',').count() == 4));
    let labels: Vec<u32> = y.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(labels.len(), 90);
    assert!(labels.iter().all(|&c| c < 3));
    // Seeded: the same command writes the same data.
    let again = dir.join("again").display().to_string();
    assert!(mixture(&again).status.success());
    assert_eq!(
        std::fs::read_to_string(format!("{again}_x.csv")).unwrap(),
        x
    );
    let o = run_cli(&[
        "hsic",
        "fit",
        "--data",
        &format!("{prefix}_x.csv"),
        "--labels",
        &format!("{prefix}_y.csv"),
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    for bad in [["--items", "0"], ["--classes", "1"], ["--folds", "1"]] {
        let o = run_cli(&["data", "mixture", "--out", &prefix, bad[0], bad[1]]);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_mixture_folds_feed_hsic_cv() {
    let dir = temp_dir("data_mixture_folds");
    let prefix = dir.join("mix").display().to_string();
    let o = run_cli(&[
        "data",
        "mixture",
        "--out",
        &prefix,
        "--items",
        "60",
        "--features",
        "3",
        "--classes",
        "3",
        "--folds",
        "3",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let test_rows: usize = (1..=3)
        .map(|k| {
            let f = dir.join("mix").join(format!("mix_{k}_label_test.csv"));
            std::fs::read_to_string(f).unwrap().lines().count()
        })
        .sum();
    assert_eq!(test_rows, 60, "every item is tested once");
    let out = dir.join("cv").display().to_string();
    let o = run_cli(&[
        "hsic",
        "cv",
        "--data",
        &dir.display().to_string(),
        "--name",
        "mix",
        "--folds",
        "3",
        "--solver",
        "ism",
        "--device",
        "cpu",
        "--out",
        &out,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cv/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["folds"], 3);
    // W* totals: iterations over every layer of every fold, none beyond
    // the cap.
    assert!(summary["ism_iterations"].as_u64().unwrap() >= 3);
    assert!(summary["s_per_iteration"].as_f64().unwrap() > 0.0);
    assert!(summary["layers_at_cap"].as_u64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
