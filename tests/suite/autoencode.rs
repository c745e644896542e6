//! RRR autoencoder (SPEC 2.3): binary encoding on both backends, feed-around
//! passes, net files, and the CLI's bad-input exits.

use crate::support::{self, output_text, run_cli, temp_dir};
use gradfree::methods::rrr::autoencode::{
    Activation, AeNet, AeSettings, AeTraining, Autoencoder, CodeSource, binary_codes, one_hot,
};
use gradfree::train::{self, Session, Start};
use gradfree::{Backend, Precision};

fn binary_settings(seed: u64) -> AeSettings {
    AeSettings {
        batch: 8,
        codes: 8,
        epochs: 150,
        iters_per_batch: 1000,
        tol: 0.0,
        beta: 0.5,
        omega: 100.0,
        margin: 0.4,
        activation: Activation::Step,
        seed,
    }
}

/// Trains 8 → 3 → 8 on the 8 one-hot items and the 8 codes; returns the
/// epoch it was solved in.
fn solve_838(be: &Backend, seed: u64) -> Option<usize> {
    let s = binary_settings(seed);
    let ae = Autoencoder::new(AeNet::layered(8, &[], 3, &[]).unwrap(), &s).unwrap();
    let codes = binary_codes(3);
    let data = one_hot(3);
    let mut training = AeTraining::new(
        be,
        &ae,
        &data,
        CodeSource::Fixed(&codes),
        &s,
        ae.random_model(seed),
        Default::default(),
    )
    .unwrap()
    .binary(3);
    let mut session = Session::silent(be).unwrap();
    train::run(&mut session, &mut training, Start::fresh()).unwrap();
    let (model, solved) = (training.model, training.solved);
    if solved.is_some() {
        // A solution is a bijection: distinct binary codes that decode back.
        let mut seen = std::collections::HashSet::new();
        for d in one_hot(3).chunks(8) {
            let c = ae.encode(&model, d);
            assert!(c.iter().all(|&v| v == 0.0 || v == 1.0), "{c:?}");
            assert!(seen.insert(format!("{c:?}")), "code {c:?} used twice");
            assert_eq!(ae.decode(&model, &c), d);
        }
    }
    solved
}

#[test]
fn binary_encoding_8_3_8_is_solved_on_both_backends() {
    // Seed 6 solves in 43 (cpu f64) and 54 (lavapipe f32) epochs of 1000
    // iterations; the C reference solves 6–7 of 10 random starts in 200.
    for (name, be) in support::backends_of(&[Precision::F64], &[Precision::F32]) {
        let e = solve_838(&be, 6);
        assert!(e.is_some(), "{name}: 8→3→8 not solved in 150 epochs");
        eprintln!("{name}: solved in epoch {}", e.unwrap());
    }
}

#[test]
fn feed_around_passes_fix_their_starting_nodes() {
    let s = AeSettings {
        activation: Activation::Zigmoid,
        ..binary_settings(2)
    };
    let net = AeNet::layered(5, &[4], 2, &[3]).unwrap();
    let ae = Autoencoder::new(net, &s).unwrap();
    let m = ae.random_model(2);
    let d = [0.0, 0.2, 0.5, 0.9, 1.0];
    let pd = ae.pass_data(&m, &d);
    assert_eq!(&pd.x[..5], &d, "data pass keeps x at the data nodes");
    let c = [0.3, 0.7];
    let pc = ae.pass_code(&m, &c);
    let fc = ae.net.first_code();
    assert_eq!(&pc.x[fc..fc + 2], &c, "code pass keeps x at the code nodes");
    // Every other x is the activation of its pre-activation.
    for (i, (&x, &y)) in pc.x.iter().zip(&pc.y).enumerate() {
        if !(fc..fc + 2).contains(&i) {
            let want = Activation::Zigmoid.apply(y - m.biases[i], 0.4);
            assert!((x - want).abs() < 1e-15, "node {i}");
        }
    }
    // The batch state: labels mark the item kinds, data sit at the fixed nodes.
    let st = ae.batch_state(&m, &[&d], &[&c]);
    assert_eq!(st.labels, vec![0, 1]);
    assert_eq!(st.data[2 * 2], 0.5);
    assert_eq!(st.data[fc * 2 + 1], 0.3);
    assert_eq!(st.data[(fc + 1) * 2 + 1], 0.7);
}

#[test]
fn autoencoder_net_files_round_trip_and_reject_bad_ones() {
    let net = AeNet::layered(6, &[4], 2, &[4]).unwrap();
    let text = net.to_text();
    let p = std::path::Path::new("net");
    assert_eq!(AeNet::parse(&text, p).unwrap(), net);
    for (bad, why) in [
        ("6 4 2", "file ends"),
        ("6 4 2 4\n0 1 99", "out of range"),
        ("6 4 2 4\n1 1 0", "expected the entry of node 0"),
        ("x 4 2 4", "not a non-negative integer"),
    ] {
        let e = AeNet::parse(bad, p).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    // An edge from a data node straight to a decoder node breaks the cycle's order.
    let mut broken = net.clone();
    broken.edges.push((0, 13));
    assert!(broken.check().is_err());
}

#[test]
fn cli_binary_encoding_writes_outputs_and_bad_inputs_exit_2() {
    let dir = temp_dir("ae_cli");
    let out = run_cli(&[
        "rrr",
        "autoencode",
        "--binary",
        "2",
        "--beta",
        "0.5",
        "--omega",
        "100",
        "--margin",
        "0.4",
        "--iters-per-batch",
        "200",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"], 1);
    assert!(summary["data_err"].is_number());
    assert!(dir.join("model.safetensors").exists());
    assert!(dir.join("metrics.jsonl").exists());
    // Data outside [0, 1], a width mismatch with the net file, a bad net file.
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "0.5,2.0\n0.1,0.2\n").unwrap();
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        csv.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("outside [0, 1]"));
    let good = dir.join("good.csv");
    std::fs::write(&good, "0.5,1.0,0\n0.1,0.2,1\n").unwrap();
    let net = dir.join("net.txt");
    std::fs::write(&net, AeNet::layered(2, &[], 1, &[]).unwrap().to_text()).unwrap();
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        good.to_str().unwrap(),
        "--net",
        net.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("data nodes"));
    std::fs::write(&net, "2 0 1 0\n0 1 5\n").unwrap();
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        good.to_str().unwrap(),
        "--net",
        net.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

#[test]
fn genuine_and_fake_sets_and_model_files_round_trip() {
    use gradfree::methods::rrr::autoencode::{
        AeModel, AeProgress, Epoch, Generator, code_lists, genuine_and_fakes,
    };
    use gradfree::methods::rrr::classify::{Classifier, Settings};
    use gradfree::methods::rrr::net::Net;
    let s = AeSettings {
        activation: Activation::Zigmoid,
        ..binary_settings(4)
    };
    let ae = Autoencoder::new(AeNet::layered(4, &[3], 2, &[3]).unwrap(), &s).unwrap();
    let m = ae.random_model(4);
    let data: Vec<f64> = (0..24).map(|i| (i % 5) as f64 / 4.0).collect();
    let rows: Vec<&[f64]> = data.chunks(4).collect();
    let lists = code_lists(&ae, &m, &rows);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].len(), 6);
    let mut rng = support::rng(1);
    let twice = genuine_and_fakes(&ae, &m, &data, &lists, 2, &mut rng);
    assert_eq!(twice.len(), 18);
    assert_eq!(twice.y.iter().filter(|&&y| y == 0).count(), 12);
    let set = genuine_and_fakes(&ae, &m, &data, &lists, 1, &mut rng);
    assert_eq!(set.len(), 12);
    assert_eq!(set.y.iter().filter(|&&y| y == 1).count(), 6);
    // Genuine items are the encodings; fakes take each coordinate from its list.
    assert_eq!(set.item(0), ae.encode(&m, rows[0]).as_slice());
    for k in 6..12 {
        for (i, v) in set.item(k).iter().enumerate() {
            assert!(lists[i].contains(v));
        }
    }
    let gs = Settings {
        batch: 4,
        epochs: 1,
        iters_per_batch: 5,
        tol: 0.0,
        beta: 1.0,
        omega: 5.0,
        upsilon: 1.0,
        margin: 0.1,
        exempt: 0,
        relabel: 0,
        false_positives: 1,
        seed: 1,
    };
    let gnet = Net::layered(&[2, 3, 2]).unwrap();
    let clf = Classifier::new(gnet.clone(), &gs).unwrap();
    let bundle = AeModel {
        net: ae.net.clone(),
        settings: s.clone(),
        model: m.clone(),
        code_lists: lists.clone(),
        generator: Some(Generator {
            net: gnet,
            settings: gs,
            model: clf.random_model(2),
        }),
        progress: AeProgress {
            epoch: 3,
            next_codes: vec![0.5; 6],
            sampler_pos: 1 << 70,
        },
        history: vec![Epoch {
            epoch: 3,
            data_err: 0.25,
            code_err: 0.125,
            rrr_err_start: 2.0,
            rrr_err_end: 1.0,
            iterations: 50.0,
            gwms: 0.5,
            seconds: 1.5,
        }],
    };
    let back = AeModel::from_bytes(&bundle.to_bytes().unwrap(), "model").unwrap();
    assert_eq!(back.progress, bundle.progress);
    assert_eq!(back.history, bundle.history);
    assert_eq!(back.net, bundle.net);
    assert_eq!(back.settings, bundle.settings);
    assert_eq!(back.model, bundle.model);
    assert_eq!(back.code_lists, bundle.code_lists);
    let (g, h) = (back.generator.unwrap(), bundle.generator.unwrap());
    assert_eq!((g.net, g.settings, g.model), (h.net, h.settings, h.model));
    // A classifier file is not an autoencoder.
    assert!(AeModel::from_bytes(b"not safetensors", "x").is_err());
}

/// DIR/data.csv: `rows` rows of `cols` uniform values in [0, 1] (3 decimals).
fn random_csv(dir: &std::path::Path, seed: u64, rows: usize, cols: usize) -> std::path::PathBuf {
    let mut r = support::rng(seed);
    let lines: Vec<String> = (0..rows)
        .map(|_| {
            support::uniform(&mut r, cols, 0.0, 1.0)
                .iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let csv = dir.join("data.csv");
    std::fs::write(&csv, lines.join("\n")).unwrap();
    csv
}

#[test]
fn cli_autoencoder_generator_encode_decode_generate() {
    let dir = temp_dir("ae_gen");
    // 60 rows of 16 values in [0, 1] (4x4 images).
    let csv = random_csv(&dir, 9, 60, 16);
    let d = dir.to_str().unwrap();
    let out = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        csv.to_str().unwrap(),
        "--encoder",
        "6",
        "--code",
        "3",
        "--decoder",
        "6",
        "--batch",
        "20",
        "--codes",
        "5",
        "--iters-per-batch",
        "10",
        "--epochs",
        "2",
        "--split",
        "0.25",
        "--generator",
        "4",
        "--gen-batch",
        "20",
        "--gen-epochs",
        "2",
        "--gen-iters",
        "10",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        d,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["held_out_items"], 15);
    assert!(summary["generator_fp"].is_number());
    assert!(summary["linear_bound"].is_number());
    for png in [
        "reconstructions.png",
        "samples.png",
        "codes.png",
        "generated.png",
    ] {
        assert!(dir.join(png).exists(), "{png}");
    }
    let model = dir.join("model.safetensors");
    let m = model.to_str().unwrap();
    let g = dir.join("gen");
    let o = run_cli(&[
        "rrr",
        "generate",
        "--model",
        m,
        "--count",
        "50",
        "--out",
        g.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("of 50 samples"));
    let e = dir.join("enc");
    let o = run_cli(&[
        "rrr",
        "encode",
        "--model",
        m,
        "--data",
        csv.to_str().unwrap(),
        "--out",
        e.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let codes = std::fs::read_to_string(e.join("codes.csv")).unwrap();
    assert_eq!(codes.lines().count(), 60);
    assert_eq!(codes.lines().next().unwrap().split(',').count(), 3);
    let dd = dir.join("dec");
    let o = run_cli(&[
        "rrr",
        "decode",
        "--model",
        m,
        "--data",
        e.join("codes.csv").to_str().unwrap(),
        "--out",
        dd.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        std::fs::read_to_string(dd.join("decoded.csv"))
            .unwrap()
            .lines()
            .count(),
        60
    );
    // Width mismatch (data given to decode) and a model without a generator exit 2.
    let o = run_cli(&[
        "rrr",
        "decode",
        "--model",
        m,
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let plain = dir.join("plain");
    let o = run_cli(&[
        "rrr",
        "autoencode",
        "--data",
        csv.to_str().unwrap(),
        "--encoder",
        "6",
        "--code",
        "3",
        "--decoder",
        "6",
        "--batch",
        "20",
        "--iters-per-batch",
        "5",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let o = run_cli(&[
        "rrr",
        "generate",
        "--model",
        plain.join("model.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("no generator"));
}

/// Each branch of the zigmoid, step and fixed-value projections on
/// hand-made points (the reference's RRRauto.c `actproj`/`autoproj`).
#[test]
fn activation_projections_are_exact_on_each_branch() {
    use gradfree::kernels::project_activation::{fixed, step, zigmoid};
    let close = |a: (f64, f64, f64), b: (f64, f64, f64)| {
        assert!(
            (a.0 - b.0).abs() < 1e-15 && (a.1 - b.1).abs() < 1e-15 && (a.2 - b.2).abs() < 1e-15,
            "{a:?} vs {b:?}"
        );
    };
    // Zigmoid, m = 0.5: flat 0 (z already ≤ −m: only x moves), flat 1, ramp.
    close(zigmoid(-0.2, -2.0, 0.0, 0.5), (0.0, -2.0, 0.0));
    close(zigmoid(1.3, 2.0, 0.0, 0.5), (1.0, 2.0, 0.0));
    // Ramp: s = (x − z/2m − ½)/(1 + ½m⁻²) = −0.1 → (0.6, 0.2, 0.1), f(0.1) = 0.6.
    close(zigmoid(0.5, 0.3, 0.0, 0.5), (0.6, 0.2, 0.1));
    // Flat 0 with y and b moved onto z = −m (the ramp's foot is x < 0);
    // from x = 0 the ramp point (1/6, −1/6, 1/6) is nearer.
    close(zigmoid(-0.5, 0.0, 0.0, 0.5), (0.0, -0.25, 0.25));
    close(
        zigmoid(0.0, 0.0, 0.0, 0.5),
        (1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0),
    );
    // Step, m = 0.4: nearer to 0 (y, b moved to z = −m), nearer to 1.
    close(step(0.3, 0.1, 0.0, 0.4), (0.0, -0.15, 0.25));
    close(step(0.8, 0.1, 0.0, 0.4), (1.0, 0.25, -0.15));
    close(step(1.0, 3.0, 1.0, 0.4), (1.0, 3.0, 1.0));
    // Fixed values: 0 and 1 are half-lines, fractions the zigmoid's inverse.
    let (y, b): (f64, f64) = fixed(0.0, 1.0, 0.0, 0.4);
    assert!(
        (y - 0.3).abs() < 1e-15 && (b - 0.7).abs() < 1e-15,
        "{y} {b}"
    );
    assert_eq!(fixed(0.0, -1.0, 0.0, 0.4), (-1.0, 0.0));
    assert_eq!(fixed(1.0, 1.0, 0.0, 0.4), (1.0, 0.0));
    let (y, b): (f64, f64) = fixed(0.75, 0.0, 0.0, 0.4);
    assert!(
        (y - 0.1).abs() < 1e-15 && (b + 0.1).abs() < 1e-15,
        "{y} {b}"
    );
}

/// Rows of `metrics.jsonl` as (epoch, data_err, code_err).
fn epoch_errors(dir: &std::path::Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        // The autoencoder's epochs (not the generator's).
        .filter(|v| v.get("stage").is_none())
        .map(|v| {
            (
                v["epoch"].as_u64().unwrap(),
                v["data_err"].as_f64().unwrap(),
                v["code_err"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn cli_autoencoder_stopped_by_time_limit_resumes_as_if_uninterrupted() {
    use gradfree::methods::rrr::autoencode::AeModel;
    let dir = temp_dir("ae_resume");
    let csv = random_csv(&dir, 11, 40, 9);
    let csv = csv.to_str().unwrap();
    let whole = dir.join("whole");
    let parts = dir.join("parts");
    let args = |out: &std::path::Path, extra: &[&str]| -> std::process::Output {
        let mut a = vec![
            "rrr",
            "autoencode",
            "--data",
            csv,
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
            "5",
            "--epochs",
            "3",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    let o = args(&whole, &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    // --time-limit 0 stops after the first epoch, with a checkpoint.
    let o = args(&parts, &["--time-limit", "0"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(epoch_errors(&parts).len(), 1);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parts.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["time_limited"], true);
    // --resume FROM with the same data, plus `extra`.
    let resume = |from: &std::path::Path, extra: &[&str]| -> std::process::Output {
        let mut a = vec![
            "rrr",
            "autoencode",
            "--data",
            csv,
            "--resume",
            from.to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ];
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    let o = resume(&parts, &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    // Epochs 2 and 3 continue the shuffles and the code sampler exactly.
    assert_eq!(epoch_errors(&parts), epoch_errors(&whole));
    let read = |d: &std::path::Path| {
        AeModel::from_bytes(
            &std::fs::read(d.join("model.safetensors")).unwrap(),
            "model",
        )
        .unwrap()
    };
    let (a, b) = (read(&whole), read(&parts));
    assert_eq!(a.model, b.model);
    assert_eq!(b.progress.epoch, 3);
    assert_eq!(b.history.len(), 3);
    // A finished checkpoint, or none, is bad input.
    for bad in [parts.as_path(), dir.join("none").as_path()] {
        let o = resume(bad, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    }
    // With --generator, a finished checkpoint trains only the generator:
    // the autoencoder stays as it was.
    let gen_dir = dir.join("gen");
    let o = resume(
        &parts,
        &[
            "--generator",
            "4",
            "--gen-epochs",
            "1",
            "--gen-batch",
            "12",
            "--gen-iters",
            "5",
            "--gen-fakes",
            "2",
            "--out",
            gen_dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let g = read(&gen_dir);
    assert_eq!(g.model, b.model);
    assert_eq!(g.history.len(), 3);
    let trained = g.generator.expect("a trained generator");
    // 12 items per batch, 8 of them fakes: FPA = 25% of 8.
    assert_eq!(trained.settings.false_positives, 2);
    assert_eq!(epoch_errors(&gen_dir), epoch_errors(&whole));
}
