//! Bad input, huge sizes and interrupted runs: every case answers with a
//! clear message and exit 2 (bad input) or 1 (runtime failure), never a
//! panic, a hang, an allocation the machine cannot hold, a lost or torn
//! result, or silent nonsense. One test per fault of the list in the issue
//! that asked for them; the data loaders' cases are in `loaders`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{cli, output_text, run_cli, temp_dir};

/// Writes the 9-input majority data into `dir`; returns (train, test).
fn majority(dir: &Path) -> (String, String) {
    let maj = dir.join("maj").display().to_string();
    let o = run_cli(&[
        "data", "majority", "--out", &maj, "--inputs", "9", "--depth", "2",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    (format!("{maj}_train"), format!("{maj}_test"))
}

/// Writes `rows` rows of `cols` values in [0, 1] to DIR/NAME.
fn csv(dir: &Path, name: &str, rows: usize, cols: usize, seed: u64) -> String {
    let mut r = crate::support::rng(seed);
    let text: String = (0..rows)
        .map(|_| {
            crate::support::uniform(&mut r, cols, 0.0, 1.0)
                .iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Asserts exit code 2 and that the output says `phrase`, without a backtrace.
fn refused(o: &Output, phrase: &str) {
    let t = output_text(o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(phrase), "expected {phrase:?} in: {t}");
    assert!(
        !t.contains("panicked") && !t.contains("stack backtrace"),
        "{t}"
    );
}

/// Temporary files (`.NAME.tmpPID`) left in `dir`, and other files but `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The tensors of a model file.
fn tensors(path: &Path) -> gradfree::io::TensorMap {
    gradfree::io::read_safetensors(&std::fs::read(path).unwrap())
        .unwrap()
        .0
}

// 1. Every retrying loop has a bound; overflowed systems are a numerical failure.
#[test]
fn starnet_ridge_search_is_bounded_and_overflow_is_a_numerical_failure() {
    use gradfree::methods::starnet::solve_normal;
    // [G | R] with G = diag(1e20, −1e20): no ridge near its mean diagonal (0) helps.
    let c = [1e20, 0.0, 1.0, 0.0, -1e20, 1.0];
    let t = std::time::Instant::now();
    let e = solve_normal(&c, 1, 1).unwrap_err();
    assert!(
        t.elapsed().as_secs() < 5,
        "the ridge search took {:?}",
        t.elapsed()
    );
    assert!(e.to_string().contains("no ridge"), "{e}");
    assert_eq!(e.exit_code(), 1);
    let e = solve_normal(&[f64::INFINITY, 1.0, 1.0, 1.0, 1.0, 1.0], 1, 1).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
}

// 2. Sizes are checked before anything is allocated; overflowing widths are refused.
#[test]
fn sizes_beyond_the_machine_are_refused_before_allocating() {
    let dir = temp_dir("bad_sizes");
    let (train, _) = majority(&dir);
    for layers in ["9,1000000,10", "9,18446744073709551615,2", "9,4000000000,2"] {
        let o = run_cli(&[
            "rrr", "classify", "--layers", layers, "--train", &train, "--device", "cpu",
        ]);
        refused(&o, "of memory");
    }
    let o = run_cli(&[
        "rrr",
        "classify",
        "--layers",
        "9,12,2",
        "--train",
        &train,
        "--device",
        "cpu",
        "--max-memory",
        "1K",
    ]);
    refused(&o, "the memory limit given");
    let data = csv(&dir, "rows.csv", 20, 16, 1);
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        &data,
        "--encoder",
        "3000000000",
        "--device",
        "cpu",
    ]);
    refused(&o, "of memory");
    let o = run_cli(&[
        "sgd",
        "--layers",
        "9,100000000000,2",
        "--train",
        &train,
        "--device",
        "cpu",
    ]);
    refused(&o, "of memory");
    let o = run_cli(&[
        "rrr", "nmf", "--ledm", "10000000", "--rank", "5", "--device", "cpu",
    ]);
    refused(&o, "of memory");
    let o = run_cli(&[
        "starnet",
        "train",
        "--data",
        &data,
        "--layers",
        "16,4000000000",
        "--device",
        "cpu",
    ]);
    refused(&o, "of memory");
}

// 3. `--time-limit 0` without `--out` stops cleanly (it used to panic).
#[test]
fn time_limit_without_an_output_directory_stops_cleanly() {
    let dir = temp_dir("bad_tl");
    let (train, test) = majority(&dir);
    let o = run_cli(&[
        "rrr",
        "classify",
        "--layers",
        "9,8,2",
        "--train",
        &train,
        "--test",
        &test,
        "--epochs",
        "3",
        "--iters-per-batch",
        "2",
        "--time-limit",
        "0",
        "--device",
        "cpu",
    ]);
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(time limit)"), "{t}");
}

/// A classifier run in DIR with `extra` flags.
fn classify(train: &str, test: &str, out: &Path, extra: &[&str]) -> Output {
    let out_s = out.display().to_string();
    let mut a = vec![
        "rrr",
        "classify",
        "--layers",
        "9,8,2",
        "--train",
        train,
        "--test",
        test,
        "--iters-per-batch",
        "4",
        "--batch",
        "64",
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--quiet",
        "--out",
        &out_s,
    ];
    a.extend_from_slice(extra);
    if !extra.contains(&"--epochs") {
        a.extend_from_slice(&["--epochs", "3"]);
    }
    run_cli(&a)
}

fn resume(train: &str, out: &Path, extra: &[&str]) -> Output {
    let out_s = out.display().to_string();
    let mut a = vec![
        "rrr", "classify", "--resume", &out_s, "--train", train, "--device", "cpu", "--quiet",
    ];
    a.extend_from_slice(extra);
    run_cli(&a)
}

// 4. The summary of a resumed run describes the whole run; resuming a
// finished run changes nothing.
#[test]
fn summaries_describe_the_whole_run_and_finished_runs_stay_put() {
    let dir = temp_dir("bad_totals");
    let (train, test) = majority(&dir);
    let run = dir.join("run");
    assert!(
        classify(&train, &test, &run, &["--time-limit", "0"])
            .status
            .success()
    );
    let o = resume(&train, &run, &["--test", &test]);
    assert!(o.status.success(), "{}", output_text(&o));
    let summary = json(&run.join("summary.json"));
    let metrics: f64 = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["gwms"]
                .as_f64()
                .unwrap()
        })
        .sum();
    let gwms = summary["gwms"].as_f64().unwrap();
    assert!(
        (gwms - metrics).abs() <= 1e-12 * metrics,
        "summary {gwms}, epochs {metrics}"
    );
    let before: Vec<Vec<u8>> = ["model.safetensors", "summary.json", "metrics.jsonl"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect();
    let o = resume(&train, &run, &["--test", &test]);
    assert!(
        output_text(&o).contains("nothing to do"),
        "{}",
        output_text(&o)
    );
    let after: Vec<Vec<u8>> = ["model.safetensors", "summary.json", "metrics.jsonl"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "a finished run's files changed");
}

// 5. A resumed run keeps its settings and data: contradicting flags and
// other data are refused; `--epochs` may move the end; the autoencoder
// keeps its seed.
#[test]
fn resumed_runs_refuse_contradicting_flags_and_other_data() {
    let dir = temp_dir("bad_resume");
    let (train, test) = majority(&dir);
    let run = dir.join("run");
    assert!(
        classify(&train, &test, &run, &["--time-limit", "0"])
            .status
            .success()
    );
    refused(&resume(&test, &run, &[]), "other data");
    let o = resume(
        &train,
        &run,
        &["--batch", "32", "--seed", "9", "--layers", "9,4,2"],
    );
    refused(&o, "--batch 32");
    let t = output_text(&o);
    assert!(t.contains("--seed 9") && t.contains("--layers"), "{t}");
    refused(&resume(&train, &run, &["--precision", "f32"]), "f64");
    // The same values are no contradiction, and --epochs extends the run.
    let o = resume(
        &train,
        &run,
        &["--batch", "64", "--epochs", "4", "--test", &test],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(json(&run.join("summary.json"))["epochs"], 4);
}

#[test]
fn a_resumed_autoencoder_keeps_the_checkpoints_seed() {
    let dir = temp_dir("bad_ae_seed");
    let data = csv(&dir, "rows.csv", 40, 9, 2);
    let ae = |out: &Path, extra: &[&str]| {
        let out_s = out.display().to_string();
        let mut a = vec![
            "rrr",
            "autoencode",
            "--data",
            &data,
            "--encoder",
            "5",
            "--code",
            "2",
            "--decoder",
            "5",
            "--batch",
            "10",
            "--codes",
            "4",
            "--iters-per-batch",
            "3",
            "--epochs",
            "2",
            "--device",
            "cpu",
            "--quiet",
            "--seed",
            "7",
            "--out",
            &out_s,
        ];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    assert!(ae(&whole, &[]).status.success());
    assert!(ae(&parts, &["--time-limit", "0"]).status.success());
    let parts_s = parts.display().to_string();
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        &data,
        "--resume",
        &parts_s,
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(json(&parts.join("summary.json"))["seed"], 7);
    let (a, b) = (
        tensors(&whole.join("model.safetensors")),
        tensors(&parts.join("model.safetensors")),
    );
    assert_eq!(a["weights"], b["weights"]);
}

// 6. No silent nonsense.
#[test]
fn one_row_predicts_as_it_does_among_many() {
    let dir = temp_dir("bad_hsic_one");
    let mut rows = String::new();
    let mut r = crate::support::rng(3);
    for k in 0..60 {
        let c = k % 2;
        let v = crate::support::uniform(&mut r, 2, 0.0, 1.0);
        rows += &format!("{},{},{c}\n", v[0] + 2.0 * c as f64, v[1]);
    }
    let data = dir.join("d.csv");
    std::fs::write(&data, &rows).unwrap();
    let (data_s, model) = (data.display().to_string(), dir.join("m"));
    let o = run_cli(&[
        "hsic",
        "fit",
        "--data",
        &data_s,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let features: Vec<String> = rows
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect();
    let all = dir.join("x.csv");
    std::fs::write(&all, features.join("\n")).unwrap();
    let m = model.join("model.safetensors").display().to_string();
    let predict = |path: &Path| {
        let o = run_cli(&[
            "hsic",
            "predict",
            "--model",
            &m,
            "--data",
            path.to_str().unwrap(),
            "--device",
            "cpu",
        ]);
        assert!(o.status.success(), "{}", output_text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let together = predict(&all);
    for k in [0, 1, 7] {
        let one = dir.join(format!("one{k}.csv"));
        std::fs::write(&one, &features[k]).unwrap();
        assert_eq!(predict(&one), vec![together[k].clone()], "row {k}");
    }
}

#[test]
fn decoding_into_images_of_the_wrong_shape_is_refused() {
    let dir = temp_dir("bad_decode");
    let data = csv(&dir, "rows.csv", 30, 16, 4);
    let model = dir.join("m");
    let o = run_cli(&[
        "starnet",
        "train",
        "--data",
        &data,
        "--layers",
        "4,8",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let codes = dir.join("codes.csv");
    std::fs::write(&codes, "0.1,0.2,0.3,0.4\n").unwrap();
    let m = model.join("model.safetensors").display().to_string();
    let out = dir.join("dec");
    let o = run_cli(&[
        "starnet",
        "decode",
        "--model",
        &m,
        "--codes",
        codes.to_str().unwrap(),
        "--image-shape",
        "5x5",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    refused(&o, "5x5");
    assert!(
        leftovers(&out, &[]).is_empty(),
        "{:?}",
        leftovers(&out, &[])
    );
}

// 7. Every setting is checked before any work.
#[test]
fn impossible_settings_are_refused_up_front() {
    let dir = temp_dir("bad_settings");
    let (train, test) = majority(&dir);
    let rows = csv(&dir, "rows.csv", 30, 16, 5);
    let cls = |extra: &[&str]| {
        let mut a = vec![
            "rrr", "classify", "--layers", "9,8,2", "--train", &train, "--device", "cpu",
        ];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    refused(&cls(&["--exempt", "100%"]), "below the batch size");
    refused(
        &cls(&["--exempt", "99%", "--batch", "10"]),
        "below the batch size",
    );
    refused(&cls(&["--relabel", "100%"]), "below the batch size");
    refused(&cls(&["--time-limit", "nan"]), "--time-limit");
    refused(
        &run_cli(&[
            "starnet", "train", "--data", &rows, "--layers", "4,8", "--epochs", "0", "--device",
            "cpu",
        ]),
        "at least 1",
    );
    refused(
        &run_cli(&[
            "starnet",
            "train",
            "--data",
            &rows,
            "--layers",
            "4,8",
            "--weight-sample",
            "0",
            "--device",
            "cpu",
        ]),
        "weight sample",
    );
    refused(
        &run_cli(&[
            "starnet", "train", "--data", &rows, "--conv", "1:3x3:1", "--layers", "4,8",
            "--device", "cpu",
        ]),
        "cannot be used with",
    );
    let ae = |extra: &[&str]| {
        let mut a = vec!["rrr", "autoencode", "--data", &rows, "--device", "cpu"];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    refused(&ae(&["--codes", "0"]), "code item");
    refused(&ae(&["--encoder", "5,,5"]), "not a positive width");
    // Generator settings are checked before the autoencoder trains.
    let t = std::time::Instant::now();
    refused(
        &ae(&["--generator", "4", "--gen-batch", "0", "--epochs", "50"]),
        "--gen-batch",
    );
    refused(
        &ae(&["--generator", "4", "--gen-epochs", "0", "--epochs", "50"]),
        "--gen-epochs",
    );
    assert!(
        t.elapsed().as_secs() < 20,
        "refused late: {:?}",
        t.elapsed()
    );
    refused(
        &run_cli(&["rrr", "nmf", "--ledm", "6", "--tol=-1", "--device", "cpu"]),
        "--tol",
    );
    // A batch larger than the data runs (and is reported) as the data.
    let out = dir.join("big_batch");
    let o = cls(&[
        "--batch",
        "1000",
        "--epochs",
        "1",
        "--iters-per-batch",
        "2",
        "--test",
        &test,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(json(&out.join("summary.json"))["settings"]["batch"], 256);
}

// 8. Outputs: no overwritten files, no temporary files, no two runs in one directory.
#[test]
fn output_files_are_never_clobbered_or_left_torn() {
    let dir = temp_dir("bad_outputs");
    // A failed rename leaves no temporary file.
    let target = dir.join("occupied");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    assert!(gradfree::io::write_atomic(&target, b"data").is_err());
    assert_eq!(leftovers(&dir, &["occupied"]), Vec::<String>::new());
    // plot: the PNG never overwrites the CSV.
    let (train, test) = majority(&dir);
    let run = dir.join("run");
    assert!(
        classify(&train, &test, &run, &["--epochs", "2"])
            .status
            .success()
    );
    let series = format!("RRR={}", run.join("metrics.jsonl").display());
    let out = dir.join("curves.csv");
    let o = run_cli(&["plot", "--series", &series, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        std::fs::read(dir.join("curves.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    assert!(
        std::fs::read_to_string(dir.join("curves.csv"))
            .unwrap()
            .starts_with("series,")
    );
    // Another run's outputs are kept unless --force.
    let o = classify(&train, &test, &run, &["--epochs", "1"]);
    refused(&o, "another run's outputs");
    let o = classify(&train, &test, &run, &["--epochs", "1", "--force"]);
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn two_runs_never_write_into_one_directory_at_once() {
    let dir = temp_dir("bad_lock");
    let (train, test) = majority(&dir);
    let out = dir.join("run");
    let out_s = out.display().to_string();
    let mut first = cli()
        .args([
            "rrr",
            "classify",
            "--layers",
            "9,40,2",
            "--train",
            &train,
            "--test",
            &test,
            "--epochs",
            "1000",
            "--iters-per-batch",
            "50",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            &out_s,
        ])
        .spawn()
        .unwrap();
    // Wait until the first run holds the directory.
    let t = std::time::Instant::now();
    while !out.join(".gradfree.lock").exists() && t.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = classify(&train, &test, &out, &["--force"]);
    first.kill().unwrap();
    first.wait().unwrap();
    refused(&o, "in use by another gradfree run");
    // A killed run's stale lock does not block the next run.
    let o = classify(&train, &test, &out, &["--force", "--epochs", "1"]);
    assert!(o.status.success(), "{}", output_text(&o));
}

// 9. Messages say the flag once, and each OS error once.
#[test]
fn messages_name_flags_and_errors_once() {
    let dir = temp_dir("bad_messages");
    let rows = csv(&dir, "rows.csv", 20, 16, 6);
    let o = run_cli(&[
        "starnet",
        "train",
        "--data",
        &rows,
        "--alpha=-0.5",
        "--device",
        "cpu",
    ]);
    refused(&o, "--alpha must be");
    assert!(!output_text(&o).contains("---"), "{}", output_text(&o));
    let o = run_cli(&[
        "rrr",
        "nmf",
        "--ledm",
        "6",
        "--runs",
        "1",
        "--max-iter",
        "5",
        "--device",
        "cpu",
        "--out",
        "/proc/no/such/dir",
    ]);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(t.matches("No such file or directory").count(), 1, "{t}");
    // A net file whose in-degree does not match its inputs says so.
    let net = dir.join("net.txt");
    std::fs::write(&net, "2 1 2\n2 3\n0 1\n3 1\n2\n4 1\n2\n").unwrap();
    let (train, _) = majority(&dir);
    let o = run_cli(&[
        "rrr",
        "classify",
        "--net",
        net.to_str().unwrap(),
        "--train",
        &train,
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("in-degree right"),
        "{}",
        output_text(&o)
    );
    // Garbage given as the bench's images is bad input.
    let garbage = dir.join("garbage-images-idx3-ubyte");
    std::fs::write(&garbage, b"not images at all").unwrap();
    let o = run_cli(&[
        "bench",
        "--mnist",
        garbage.to_str().unwrap(),
        "--devices",
        "cpu",
        "--only",
        "sgd-maj13",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    // One thread is one thread.
    let o = cli()
        .args([
            "rrr",
            "nmf",
            "--ledm",
            "6",
            "--runs",
            "1",
            "--max-iter",
            "5",
            "--device",
            "cpu",
        ])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        output_text(&o).contains("cpu (1 thread)"),
        "{}",
        output_text(&o)
    );
}

// 10. Defaults do not stop a run below the instance's typical cost.
#[test]
fn the_ledm_cap_scales_with_the_instance_and_says_how_close_a_run_came() {
    use gradfree::methods::rrr::nmf::{ledm_default_cap, paper_ledm_gwms};
    // Ten times the paper's mean work: 1.1 M iterations for m = 6, 15.9 M for m = 8.
    assert_eq!(ledm_default_cap(6, 5), 1_111_112);
    assert!((15_800_000..16_000_000).contains(&ledm_default_cap(8, 6)));
    assert!(paper_ledm_gwms(10) > paper_ledm_gwms(8) && paper_ledm_gwms(10) < paper_ledm_gwms(12));
    assert!(paper_ledm_gwms(20) > paper_ledm_gwms(16));
    let o = run_cli(&[
        "rrr",
        "nmf",
        "--ledm",
        "8",
        "--runs",
        "1",
        "--max-iter",
        "300",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("closest: RRR_err"),
        "{}",
        output_text(&o)
    );
}

/// Kills a run once its first checkpoint exists, then resumes it; the final
/// model must be the uninterrupted run's, bit for bit.
fn kill_and_resume(tag: &str, args: &[&str], resume_args: &[&str]) {
    let dir = temp_dir(tag);
    let (whole, parts): (PathBuf, PathBuf) = (dir.join("whole"), dir.join("parts"));
    let run = |out: &Path| {
        let mut a = args.to_vec();
        let s = out.display().to_string();
        a.extend_from_slice(&["--out", &s]);
        let o = run_cli(&a);
        assert!(o.status.success(), "{}", output_text(&o));
    };
    run(&whole);
    let parts_s = parts.display().to_string();
    let mut a = args.to_vec();
    a.extend_from_slice(&["--out", &parts_s]);
    let mut child = cli().args(&a).spawn().unwrap();
    let t = std::time::Instant::now();
    while !parts.join("checkpoint.safetensors").exists() && t.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGKILL: no chance to clean up, as a killed job.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        parts.join("checkpoint.safetensors").exists(),
        "no checkpoint before the kill"
    );
    let mut r = resume_args.to_vec();
    r.extend_from_slice(&["--resume", &parts_s]);
    let o = run_cli(&r);
    assert!(o.status.success(), "{}", output_text(&o));
    let (a, b) = (
        tensors(&whole.join("model.safetensors")),
        tensors(&parts.join("model.safetensors")),
    );
    assert_eq!(
        a, b,
        "{tag}: the resumed model differs from the uninterrupted one"
    );
    let left = leftovers(&parts, &[]);
    assert!(
        left.iter().all(|f| !f.contains(".tmp")),
        "{tag}: leftovers {left:?}"
    );
}

#[test]
fn killed_classifier_resumes_to_the_uninterrupted_model() {
    let dir = temp_dir("kill_cls_data");
    let (train, test) = majority(&dir);
    let common = [
        "--train",
        &train,
        "--test",
        &test,
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--quiet",
    ];
    let mut args = vec![
        "rrr",
        "classify",
        "--layers",
        "9,16,2",
        "--epochs",
        "12",
        "--iters-per-batch",
        "40",
        "--batch",
        "32",
        "--exempt",
        "1",
    ];
    args.extend_from_slice(&common);
    let mut resume = vec!["rrr", "classify"];
    resume.extend_from_slice(&common);
    kill_and_resume("kill_cls", &args, &resume);
}

#[test]
fn killed_autoencoder_with_generator_resumes_to_the_uninterrupted_model() {
    let dir = temp_dir("kill_ae_data");
    let data = csv(&dir, "rows.csv", 60, 9, 8);
    let common = [
        "--data",
        data.as_str(),
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--quiet",
    ];
    let generator = [
        "--generator",
        "4",
        "--gen-epochs",
        "2",
        "--gen-batch",
        "20",
        "--gen-iters",
        "5",
    ];
    let mut args = vec![
        "rrr",
        "autoencode",
        "--encoder",
        "5",
        "--code",
        "2",
        "--decoder",
        "5",
        "--batch",
        "10",
        "--codes",
        "4",
        "--iters-per-batch",
        "20",
        "--epochs",
        "10",
    ];
    args.extend_from_slice(&common);
    args.extend_from_slice(&generator);
    let mut resume = vec!["rrr", "autoencode"];
    resume.extend_from_slice(&common);
    resume.extend_from_slice(&generator);
    kill_and_resume("kill_ae", &args, &resume);
}

#[test]
fn killed_online_nmf_resumes_to_the_uninterrupted_model() {
    let dir = temp_dir("kill_nmf_data");
    let data = csv(&dir, "rows.csv", 80, 12, 9);
    let common = [
        "--data",
        data.as_str(),
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--quiet",
    ];
    let mut args = vec![
        "rrr",
        "nmf",
        "--rank",
        "3",
        "--epochs",
        "40",
        "--batch",
        "20",
        "--iters-per-batch",
        "30",
    ];
    args.extend_from_slice(&common);
    let mut resume = vec!["rrr", "nmf"];
    resume.extend_from_slice(&common);
    kill_and_resume("kill_nmf", &args, &resume);
}

/// Arbitrary bytes and damaged model files never panic any model reader.
mod model_files {
    use gradfree::methods::hsic::SavedModel;
    use gradfree::methods::rrr::autoencode::AeModel;
    use gradfree::methods::rrr::classify::Saved;
    use gradfree::methods::rrr::nmf::OnlineCheckpoint;
    use gradfree::methods::starnet::StarNet;
    use proptest::prelude::*;

    fn read_all(bytes: &[u8]) {
        let _ = Saved::from_bytes(bytes, "m");
        let _ = AeModel::from_bytes(bytes, "m");
        let _ = StarNet::from_bytes(bytes, "m");
        let _ = SavedModel::from_bytes(bytes, "m");
        let _ = OnlineCheckpoint::from_bytes(bytes, "m");
    }

    /// A valid classifier file (the fixture of the pre-redesign binary).
    fn valid() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/v0-checkpoints/classify-final.safetensors"
        ))
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            read_all(&bytes);
        }

        #[test]
        fn damaged_files_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut v = valid();
            let i = at.index(v.len());
            v[i] = byte;
            read_all(&v);
            v.truncate(cut.index(v.len()));
            read_all(&v);
        }
    }

    #[test]
    fn damaged_json_headers_never_panic() {
        let v = valid();
        let n = u64::from_le_bytes(v[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(v[8..8 + n].to_vec()).unwrap();
        // Counts that overflow or do not fit the tensors.
        for (from, to) in [
            (
                "\\\"hidden_nodes\\\":12",
                "\\\"hidden_nodes\\\":18446744073709551615",
            ),
            ("\\\"data_nodes\\\":9", "\\\"data_nodes\\\":4294967296"),
            ("\\\"epoch\\\":3", "\\\"epoch\\\":-1"),
        ] {
            let h = header.replacen(from, to, 1);
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(h.as_bytes());
            b.extend_from_slice(&v[8 + n..]);
            read_all(&b);
        }
    }
}

/// Rewrites the safetensors file at `path` after `edit` changes its tensors
/// or its gradfree metadata.
fn edit_model(
    path: &Path,
    edit: impl FnOnce(&mut gradfree::io::TensorMap, &mut serde_json::Value),
) {
    let (mut t, mut meta) = gradfree::io::read_safetensors(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut t, &mut meta);
    let named: Vec<_> = t
        .into_iter()
        .map(|(name, (shape, data))| gradfree::io::NamedTensor { name, shape, data })
        .collect();
    std::fs::write(
        path,
        gradfree::io::safetensors_bytes(&named, &meta).unwrap(),
    )
    .unwrap();
}

/// Found by fuzzing the command line (tenth session): counts and shapes near
/// 2^64 overflowed, a kernel wider than its image planned terabytes, a
/// diverged NMF hung in an SVD, and damaged HSIC models indexed past their
/// arrays. Each is now refused (exit 2) or a numerical failure (exit 1).
#[test]
fn huge_counts_diverged_runs_and_damaged_models_fail_cleanly() {
    let dir = temp_dir("bad-fuzzed");
    let rows = csv(&dir, "rows.csv", 30, 16, 2);
    let max = u64::MAX.to_string();
    let nmf = [
        "rrr", "nmf", "--data", &rows, "--rank", "4", "--device", "cpu",
    ];
    refused(
        &run_cli(&[&nmf[..], &["--image-shape", "4294967296x4294967296"]].concat()),
        "2^32 pixels",
    );
    let ae = |extra: &[&str]| {
        let mut a = vec![
            "rrr",
            "autoencode",
            "--data",
            &rows,
            "--device",
            "cpu",
            "--code",
            "3",
        ];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    refused(&ae(&["--codes", &max]), "memory");
    refused(
        &ae(&["--generator", "4", "--gen-fakes", &max]),
        "--gen-fakes",
    );
    refused(&ae(&["--limit", &max, "--codes", &max]), "memory");
    refused(
        &run_cli(&[
            "starnet",
            "train",
            "--data",
            &rows,
            "--conv",
            "1:301x301:2",
            "--image-shape",
            "4x4",
            "--device",
            "cpu",
        ]),
        "kernel on a 2x2 input",
    );
    let mix = dir.join("mix").display().to_string();
    let o = run_cli(&[
        "data",
        "mixture",
        "--out",
        &mix,
        "--items",
        "60",
        "--features",
        "4",
        "--classes",
        "3",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let (x, y) = (format!("{mix}_x.csv"), format!("{mix}_y.csv"));
    refused(
        &run_cli(&[
            "hsic",
            "fit",
            "--data",
            &x,
            "--labels",
            &y,
            "--sigma-steps",
            &max,
            "--device",
            "cpu",
        ]),
        "--sigma-steps",
    );
    // A huge omega makes W overflow: a numerical failure, not a hang.
    let o = crate::support::run_cli_within(
        &[
            &nmf[..],
            &[
                "--batch", "10", "--epochs", "1", "--omega", "1e39", "--quiet",
            ],
        ]
        .concat(),
        std::time::Duration::from_secs(120),
    );
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("non-finite"), "{t}");
    // The exact LEDM solver does not call overflowed factors solved.
    let o = run_cli(&[
        "rrr",
        "nmf",
        "--ledm",
        "6",
        "--runs",
        "1",
        "--max-iter",
        "100",
        "--omega",
        "1e39",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        &dir.join("ledm").display().to_string(),
    ]);
    assert!(
        !output_text(&o).contains("solved 1/1"),
        "{}",
        output_text(&o)
    );
    // A NaN in an online NMF checkpoint is refused on load, not fed to the
    // encoder's factorization.
    let nmf_out = dir.join("nmf");
    let o = run_cli(
        &[
            &nmf[..],
            &[
                "--batch",
                "10",
                "--epochs",
                "2",
                "--time-limit",
                "0",
                "--quiet",
                "--out",
            ],
            &[nmf_out.to_str().unwrap()],
        ]
        .concat(),
    );
    let ck = nmf_out.join("checkpoint.safetensors");
    assert!(ck.exists(), "{}", output_text(&o));
    edit_model(&ck, |t, _| t.get_mut("weights").unwrap().1[0] = f64::NAN);
    refused(
        &run_cli(&[
            "rrr",
            "nmf",
            "--resume",
            nmf_out.to_str().unwrap(),
            "--data",
            &rows,
            "--device",
            "cpu",
        ]),
        "weights",
    );
    // A checkpoint's own code count is held to the memory budget too.
    let ae_out = dir.join("ae");
    let o = ae(&[
        "--epochs",
        "2",
        "--batch",
        "10",
        "--codes",
        "4",
        "--iters-per-batch",
        "2",
        "--time-limit",
        "0",
        "--quiet",
        "--out",
        ae_out.to_str().unwrap(),
    ]);
    let ck = ae_out.join("checkpoint.safetensors");
    assert!(ck.exists(), "{}", output_text(&o));
    edit_model(&ck, |_, m| m["settings"]["codes"] = u64::MAX.into());
    refused(
        &run_cli(&[
            "rrr",
            "autoencode",
            "--resume",
            ae_out.to_str().unwrap(),
            "--data",
            &rows,
            "--device",
            "cpu",
        ]),
        "memory",
    );
    let letters = dir.join("l.csv").display().to_string();
    refused(
        &run_cli(&[
            "data",
            "letters",
            "--out",
            &letters,
            "--preview",
            &letters,
            "--count",
            "4",
        ]),
        "same file",
    );
    // Damaged W_s models: each refused by the loader.
    let fit = dir.join("hs");
    let o = run_cli(&[
        "hsic",
        "fit",
        "--data",
        &x,
        "--labels",
        &y,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        &fit.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    type Edit = fn(&mut gradfree::io::TensorMap, &mut serde_json::Value);
    let edits: [(&str, Edit); 5] = [
        ("no classes", |_, m| m["classes"] = 0.into()),
        ("a label past the classes", |t, _| {
            t.get_mut("labels").unwrap().1[0] = 99.0
        }),
        ("no layers", |_, m| m["layers"] = serde_json::json!([])),
        ("a unit row past the rows", |_, m| {
            m["layers"][0]["units"][0]["rows"] = serde_json::json!([9999])
        }),
        ("no label values", |_, m| {
            m["label_values"] = serde_json::json!([])
        }),
    ];
    for (what, edit) in edits {
        let model = dir.join("damaged.safetensors");
        std::fs::copy(fit.join("model.safetensors"), &model).unwrap();
        edit_model(&model, edit);
        let o = run_cli(&[
            "hsic",
            "predict",
            "--model",
            &model.display().to_string(),
            "--data",
            &x,
            "--device",
            "cpu",
            "--out",
            &dir.join("pred").display().to_string(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", output_text(&o));
        assert!(
            output_text(&o).contains("not an HSIC W_s model"),
            "{what}: {}",
            output_text(&o)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A classifier's checkpoint from another method, or one whose exemptions
/// reach its batch size, is refused on resume as the flags would be.
#[test]
fn resumed_classifiers_check_the_checkpoints_method_and_budgets() {
    let dir = temp_dir("bad-resume-method");
    let (train, test) = majority(&dir);
    let out = dir.join("run");
    let o = classify(&train, &test, &out, &["--time-limit", "0"]);
    assert!(
        out.join("checkpoint.safetensors").exists(),
        "{}",
        output_text(&o)
    );
    type Edit = fn(&mut gradfree::io::TensorMap, &mut serde_json::Value);
    let edits: [(&str, Edit); 3] = [
        ("not a classifier", |_, m| m["method"] = "rrr nmf".into()),
        ("not finite", |t, _| {
            t.get_mut("weights").unwrap().1[0] = f64::NAN
        }),
        ("below the batch size", |_, m| {
            m["settings"]["exempt"] = 64.into()
        }),
    ];
    for (phrase, edit) in edits {
        let edited = dir.join("edited");
        std::fs::remove_dir_all(&edited).ok();
        std::fs::create_dir_all(&edited).unwrap();
        for f in std::fs::read_dir(&out).unwrap() {
            let f = f.unwrap().path();
            if f.is_file() {
                std::fs::copy(&f, edited.join(f.file_name().unwrap())).unwrap();
            }
        }
        edit_model(&edited.join("checkpoint.safetensors"), edit);
        refused(&resume(&train, &edited, &[]), phrase);
    }
    std::fs::remove_dir_all(&dir).ok();
}
