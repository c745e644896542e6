//! Data-parallel runs over MPI (`--features mpi`): `mpirun -np N gradfree …`
//! trains the model one process trains, a failing rank ends the job, and a
//! killed job resumes, with another N too. Needs Open MPI's `mpirun`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{cli, output_text, run_cli, run_within, temp_dir};
use gradfree::io::{read_file, read_safetensors};

/// `mpirun -np n gradfree args…`, with what Open MPI needs here (root in
/// a container, more ranks than cores, a VM's shared memory).
fn mpirun(n: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &n.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RAYON_NUM_THREADS", "1");
    c
}

/// Runs `args` as one process (n = 1) or as an MPI job of n; fails the test
/// unless it succeeds within two minutes.
fn run(n: usize, args: &[String]) -> Output {
    let mut c = if n == 1 {
        let mut c = cli();
        c.env("RAYON_NUM_THREADS", "1");
        c
    } else {
        let mut c = mpirun(n);
        c.arg(env!("CARGO_BIN_EXE_gradfree"));
        c
    };
    c.args(args);
    let o = run_within(c, Duration::from_secs(120));
    assert!(o.status.success(), "N={n} {args:?}:\n{}", output_text(&o));
    o
}

/// The largest difference between two models' tensors, relative to each
/// tensor's largest magnitude (at least a millionth of the model's).
fn model_diff(a: &Path, b: &Path) -> f64 {
    let (ta, _) = read_safetensors(&read_file(a).unwrap()).unwrap();
    let (tb, _) = read_safetensors(&read_file(b).unwrap()).unwrap();
    assert_eq!(
        ta.keys().collect::<std::collections::BTreeSet<_>>(),
        tb.keys().collect(),
        "{a:?} against {b:?}"
    );
    let top = ta
        .values()
        .flat_map(|t| t.1.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (name, (shape, va)) in &ta {
        let (sb, vb) = &tb[name];
        assert_eq!(shape, sb, "{name}");
        let scale = va
            .iter()
            .fold(1e-6 * top, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs() / scale);
        }
    }
    worst
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&read_file(&dir.join("summary.json")).unwrap()).unwrap()
}

/// Small data sets for every method in `dir`.
struct Data {
    maj: (PathBuf, PathBuf),
    images: PathBuf,
    letters: PathBuf,
    spiral: PathBuf,
}

fn data(dir: &Path) -> Data {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let maj = dir.join("maj");
    let o = run_cli(&[
        "data",
        "majority",
        "--out",
        &s(&maj),
        "--inputs",
        "9",
        "--depth",
        "2",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let letters = dir.join("letters.csv");
    let o = run_cli(&["data", "letters", "--out", &s(&letters), "--count", "120"]);
    assert!(o.status.success(), "{}", output_text(&o));
    // 300 smooth 8 × 8 images in four kinds, as IDX with labels beside.
    let (n, side) = (300usize, 8usize);
    let mut img = vec![0u8, 0, 8, 3];
    for v in [n, side, side] {
        img.extend_from_slice(&(v as u32).to_be_bytes());
    }
    let mut lab = vec![0u8, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    for k in 0..n {
        let c = k % 4;
        for i in 0..side {
            for j in 0..side {
                img.push(
                    ((i * (c + 1) + j * (3 - c)) * 9 + (k * 31 + i * 7 + j) % 40).min(255) as u8,
                );
            }
        }
        lab.push(c as u8);
    }
    let images = dir.join("img-images-idx3-ubyte");
    std::fs::write(&images, img).unwrap();
    std::fs::write(dir.join("img-labels-idx1-ubyte"), lab).unwrap();
    // Two interleaved spirals, 150 points each, label last.
    let mut csv = String::new();
    for k in 0..300 {
        let (c, t) = (k % 2, 0.5 + (k / 2) as f64 * 0.04);
        let sign = if c == 0 { 1.0 } else { -1.0 };
        csv += &format!("{},{},{c}\n", sign * t * t.cos(), sign * t * t.sin());
    }
    let spiral = dir.join("spiral.csv");
    std::fs::write(&spiral, csv).unwrap();
    Data {
        maj: (dir.join("maj_train"), dir.join("maj_test")),
        images,
        letters,
        spiral,
    }
}

/// Command-line words (none holds a space: the test paths have none).
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn every_method_trains_the_model_of_one_process() {
    let dir = temp_dir("mpi_same");
    let d = data(&dir);
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (train, test) = (p(&d.maj.0), p(&d.maj.1));
    let (img, letters, spiral) = (p(&d.images), p(&d.letters), p(&d.spiral));
    let common = ["--device", "cpu", "--precision", "f64", "--quiet"];
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "classify",
            words(&format!(
                "rrr classify --layers 9,12,2 --train {} --test {} --epochs 4 --iters-per-batch 20 --batch 64 --exempt 2",
                train, test
            )),
        ),
        (
            "relabel",
            words(&format!(
                "rrr classify --layers 9,12,2 --train {} --epochs 3 --iters-per-batch 20 --batch 64 --relabel 5%",
                train
            )),
        ),
        (
            "sgd",
            words(&format!(
                "sgd --layers 9,12,2 --train {} --test {} --epochs 3 --batch 32 --lr 0.5",
                train, test
            )),
        ),
        (
            "autoencode",
            words(&format!(
                "rrr autoencode --data {} --encoder 16 --code 4 --decoder 16 --epochs 2 --batch 50 --codes 10 --iters-per-batch 10 --generator 8 --gen-epochs 2 --gen-batch 50 --gen-iters 10",
                img
            )),
        ),
        (
            "nmf",
            words(&format!(
                "rrr nmf --data {} --rank 16 --epochs 2 --batch 40",
                letters
            )),
        ),
        ("ledm", words("rrr nmf --ledm 6 --runs 3 --max-iter 5000")),
        (
            "starnet",
            words(&format!(
                "starnet train --data {} --layers 8,16 --epochs 2",
                img
            )),
        ),
        (
            "starnet-sample",
            words(&format!(
                "starnet train --data {} --layers 8,16 --epochs 2 --weight-sample 100",
                img
            )),
        ),
        (
            "starnet-conv",
            words(&format!(
                "starnet train --data {} --conv 2:3x3:2,1:3x3:2 --epochs 1",
                img
            )),
        ),
        (
            "hsic-ws",
            words(&format!(
                "hsic fit --data {} --name spiral --solver ws",
                spiral
            )),
        ),
        (
            "hsic-ism",
            words(&format!(
                "hsic fit --data {} --name spiral --solver ism",
                spiral
            )),
        ),
        (
            "hsic-ism-lobpcg",
            words(&format!(
                "hsic fit --data {} --name spiral --solver ism --eigen lobpcg",
                spiral
            )),
        ),
    ];
    for (name, args) in runs {
        let out = |n: usize| dir.join(format!("{name}-{n}"));
        let with = |n: usize| {
            let mut a = args.clone();
            a.extend(common.iter().map(|s| s.to_string()));
            a.extend(["--out".to_string(), p(&out(n))]);
            a
        };
        let one = run(1, &with(1));
        for n in [2, 3] {
            let o = run(n, &with(n));
            let s = summary(&out(n));
            assert_eq!(s["ranks"], n, "{name}: {s}");
            assert!(s["allreduce_seconds"].as_f64().is_some(), "{name}: {s}");
            assert!(s["communicated_bytes"].as_u64().unwrap() > 0, "{name}: {s}");
            // The same work and the same last line (but its timing).
            let last = |o: &Output| {
                let t = String::from_utf8_lossy(&o.stdout).to_string();
                let line = t
                    .lines()
                    .rfind(|l| l.contains("GWMs in"))
                    .unwrap_or("")
                    .to_string();
                line.split(" in ").next().unwrap().to_string()
            };
            assert_eq!(last(&o), last(&one), "{name} N={n}");
            if name == "sgd" {
                let metrics = |n: usize| -> Vec<serde_json::Value> {
                    std::fs::read_to_string(out(n).join("metrics.jsonl"))
                        .unwrap()
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect()
                };
                for (a, b) in metrics(1).iter().zip(metrics(n)) {
                    let (la, lb) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
                    assert!((la - lb).abs() <= 1e-12 * la.abs(), "sgd N={n}: {la} {lb}");
                    assert_eq!(a["test_err"], b["test_err"], "sgd N={n}");
                }
                continue;
            }
            let diff = model_diff(
                &out(1).join("model.safetensors"),
                &out(n).join("model.safetensors"),
            );
            assert!(
                diff <= 1e-9,
                "{name}: N={n} differs from one process by {diff:e}"
            );
            // Discrete choices are the same: the exempted items.
            if name == "classify" {
                assert_eq!(
                    std::fs::read_to_string(out(1).join("exempted.txt")).unwrap(),
                    std::fs::read_to_string(out(n).join("exempted.txt")).unwrap()
                );
            }
            // Only rank 0 writes: one lock, one set of outputs.
            assert!(!out(n).join(".gradfree.lock").exists(), "{name}");
        }
    }
}

#[test]
fn several_ranks_share_one_gpu_engine_per_rank() {
    if crate::support::gpu(gradfree::Precision::F32).is_none() {
        return;
    }
    // Also in a process of its own with the weight consensus from the
    // step's quad sums (the hardware default; lavapipe's is w's rows).
    let name = "mpi::several_ranks_share_one_gpu_engine_per_rank";
    let sums = crate::support::in_own_process(name, &[("GRADFREE_QUAD_SUMS", "1")]);
    let dir = temp_dir(if sums { "mpi_gpu_sums" } else { "mpi_gpu" });
    let d = data(&dir);
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let args = |n: usize| {
        words(&format!(
            "rrr classify --layers 9,12,2 --train {} --test {} --epochs 2 --iters-per-batch 10 --batch 64 --exempt 2 --device gpu --quiet --out {}",
            p(&d.maj.0),
            p(&d.maj.1),
            p(&dir.join(format!("g{n}")))
        ))
    };
    run(1, &args(1));
    for n in [2, 3] {
        run(n, &args(n));
        let diff = model_diff(
            &dir.join("g1/model.safetensors"),
            &dir.join(format!("g{n}/model.safetensors")),
        );
        assert!(diff <= 1e-4, "gpu f32 N={n}: {diff:e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("g1/exempted.txt")).unwrap(),
            std::fs::read_to_string(dir.join(format!("g{n}/exempted.txt"))).unwrap()
        );
    }
}

/// The job's exit: status, output, and how long it took.
fn job(n: usize, shell: &str) -> (Output, Duration) {
    let mut c = mpirun(n);
    c.args(["sh", "-c", shell]);
    let t = Instant::now();
    let o = run_within(c, Duration::from_secs(60));
    (o, t.elapsed())
}

#[test]
fn a_failing_rank_ends_the_whole_job() {
    let dir = temp_dir("mpi_fault");
    let d = data(&dir);
    let exe = env!("CARGO_BIN_EXE_gradfree");
    let base = format!(
        "rrr classify --layers 9,12,2 --test {} --epochs 500 --batch 64 --device cpu --quiet",
        d.maj.1.display()
    );
    // Bad input on rank 1 only: its training file does not exist.
    let shell = format!(
        "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then T=/no/such/file; else T={}; fi; exec {exe} {base} --train \"$T\" --out {}",
        d.maj.0.display(),
        dir.join("bad").display()
    );
    let (o, took) = job(2, &shell);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("rank 1 of 2") && t.contains("/no/such/file"),
        "{t}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    // A panic on rank 2 of 3.
    let mut c = mpirun(3);
    c.args(["-x", "GRADFREE_TEST_PANIC_RANK=2", exe])
        .args(base.split(' '))
        .args(["--train", d.maj.0.to_str().unwrap(), "--out"])
        .arg(dir.join("panic"));
    let t0 = Instant::now();
    let o = run_within(c, Duration::from_secs(60));
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("rank 2 of 3") && t.contains("internal error"),
        "{t}"
    );
    assert!(!t.contains("stack backtrace"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    // A command of one process refuses a job.
    let mut c = mpirun(2);
    c.args([exe, "devices"]);
    let o = run_within(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("runs in one process"));
}

#[test]
fn a_killed_job_resumes_with_another_number_of_ranks() {
    let dir = temp_dir("mpi_kill");
    let d = data(&dir);
    let exe = env!("CARGO_BIN_EXE_gradfree");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let args = words(&format!(
        "rrr classify --layers 9,12,2 --train {} --test {} --epochs 25 --iters-per-batch 200 --batch 64 --exempt 2 --precision f64 --device cpu --quiet",
        p(&d.maj.0),
        p(&d.maj.1)
    ));
    let mut whole = args.clone();
    whole.extend(["--out".into(), p(&dir.join("whole"))]);
    run(1, &whole);
    for (signal, n, then) in [("KILL", 2, 3), ("TERM", 3, 1)] {
        let out = dir.join(format!("killed-{signal}"));
        let pids = dir.join(format!("pids-{signal}"));
        std::fs::create_dir_all(&pids).unwrap();
        let shell = format!(
            "echo $$ > {}/$OMPI_COMM_WORLD_RANK; exec {exe} {} --out {}",
            pids.display(),
            args.join(" "),
            out.display()
        );
        let mut c = mpirun(n);
        c.args(["sh", "-c", &shell])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().expect("mpirun");
        let t = Instant::now();
        while !out.join("checkpoint.safetensors").exists() {
            assert!(t.elapsed() < Duration::from_secs(60), "no checkpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
        let victim = std::fs::read_to_string(pids.join("1")).unwrap();
        let k = Command::new("kill")
            .args([&format!("-{signal}"), victim.trim()])
            .status()
            .unwrap();
        assert!(k.success());
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the job outlived rank 1's {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "{signal}");
        let done = std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(done < 25, "{signal}: killed after all {done} epochs");
        let resume = words(&format!(
            "rrr classify --resume {} --train {} --test {} --device cpu --quiet",
            p(&out),
            p(&d.maj.0),
            p(&d.maj.1)
        ));
        run(then, &resume);
        let diff = model_diff(
            &dir.join("whole/model.safetensors"),
            &out.join("model.safetensors"),
        );
        assert!(
            diff <= 1e-9,
            "{signal}: resumed with {then} ranks, off by {diff:e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("whole/exempted.txt")).unwrap(),
            std::fs::read_to_string(out.join("exempted.txt")).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(out.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .count(),
            25
        );
    }
    // A time limit stops every rank together (and the run resumes alone).
    let out = dir.join("limited");
    let mut a = args.clone();
    a.extend(["--time-limit".into(), "0".into(), "--out".into(), p(&out)]);
    run(2, &a);
    assert_eq!(summary(&out)["time_limited"], true);
}
