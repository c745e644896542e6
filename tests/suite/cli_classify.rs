//! `gradfree rrr classify`, `predict` and `data majority` end to end: a
//! run killed after an epoch (here: stopped by --time-limit) and resumed
//! ends with exactly the uninterrupted run's model; malformed inputs exit 2
//! naming the offending line.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{output_text, run_cli, temp_dir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn majority(dir: &Path) -> (PathBuf, PathBuf) {
    let prefix = dir.join("maj");
    let o = run_cli(&[
        "data",
        "majority",
        "--inputs",
        "7",
        "--depth",
        "2",
        "--seed",
        "4",
        "--out",
        s(&prefix),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    (dir.join("maj_train"), dir.join("maj_test"))
}

fn classify(train: &Path, test: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "rrr",
        "classify",
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--layers",
        "7,8,2",
        "--train",
        s(train),
        "--test",
        s(test),
        "--batch",
        "16",
        "--epochs",
        "3",
        "--iters-per-batch",
        "20",
        "--exempt",
        "1",
        "--quiet",
        "--out",
        s(out),
    ];
    args.extend(extra);
    run_cli(&args)
}

fn weights(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let (t, _) = gradfree::io::read_safetensors(&bytes).unwrap();
    t["weights"]
        .1
        .iter()
        .chain(&t["biases"].1)
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn resumed_run_ends_with_the_uninterrupted_model() {
    let dir = temp_dir("cls-resume");
    let (train, test) = majority(&dir);
    let full = dir.join("full");
    let o = classify(&train, &test, &full, &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    let part = dir.join("part");
    let o = classify(&train, &test, &part, &["--time-limit", "0"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 1, "stopped after the first epoch");
    let o = run_cli(&[
        "rrr",
        "classify",
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--train",
        s(&train),
        "--test",
        s(&test),
        "--resume",
        s(&part),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        weights(&part.join("model.safetensors")),
        weights(&full.join("model.safetensors"))
    );
    let lines = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines(&part), lines(&full)), (3, 3));
    for f in [
        "summary.json",
        "checkpoint.safetensors",
        "net.txt",
        "exempted.txt",
    ] {
        assert!(full.join(f).exists(), "{f}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(full.join("summary.json")).unwrap()).unwrap();
    for k in [
        "train_err",
        "test_err",
        "batch_err",
        "epochs",
        "gwms",
        "seconds",
        "device",
    ] {
        assert!(summary.get(k).is_some(), "summary lacks {k}");
    }
    // The CPU backend starts batches from the host's feed pass.
    assert_eq!(summary["batches_start_on_device"], false);
    // predict reproduces the reported test error.
    let o = run_cli(&[
        "predict",
        "--model",
        s(&full.join("model.safetensors")),
        "--data",
        s(&test),
        "--out",
        s(&dir.join("pred")),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pred/summary.json")).unwrap()).unwrap();
    assert_eq!(p["error"], summary["test_err"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("pred/predictions.csv"))
            .unwrap()
            .lines()
            .count(),
        65
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_inputs_exit_2_with_the_line() {
    let dir = temp_dir("cls-bad");
    let (train, test) = majority(&dir);
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let cycle = write("cycle.net", "7 2 2\n7 2 0 8\n8 1 7\n9 1 7\n10 1 8\n");
    let range = write("range.net", "7 1 2\n7 1 0\n8 1 12\n9 1 7\n");
    let short = write("short.net", "7 1 2\n7 1 0\n8 1 7\n");
    let nan = write("nan.dat", "7 2\n0 1 0 1 0 1 nan 1\n");
    let trunc = write("trunc.dat", "7 2\n0 1 0 1 0 1 1 1\n0 1 0\n");
    let out = dir.join("o");
    for (args, needle) in [
        (vec!["--net", s(&cycle), "--train", s(&train)], "cycle"),
        (
            vec!["--net", s(&range), "--train", s(&train)],
            "range.net:3",
        ),
        (vec!["--net", s(&short), "--train", s(&train)], "file ends"),
        (vec!["--layers", "7,4,2", "--train", s(&nan)], "nan.dat:2"),
        (
            vec!["--layers", "7,4,2", "--train", s(&trunc)],
            "trunc.dat:3",
        ),
        (vec!["--layers", "5,4,2", "--train", s(&train)], "features"),
        (
            vec!["--layers", "7,4,2", "--train", s(&train), "--exempt", "40"],
            "batch",
        ),
        (
            vec!["--layers", "7,4,2", "--train", s(&train), "--split", "1.5"],
            "split",
        ),
    ] {
        let mut a = vec![
            "rrr",
            "classify",
            "--device",
            "cpu",
            "--quiet",
            "--batch",
            "16",
            "--out",
            s(&out),
        ];
        a.extend(args.iter().copied());
        let o = run_cli(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", output_text(&o));
        assert!(
            output_text(&o).contains(needle),
            "{args:?}: {}",
            output_text(&o)
        );
    }
    let o = run_cli(&["predict", "--model", s(&train), "--data", s(&test)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
