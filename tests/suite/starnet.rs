//! StarNet: the dense, normal-equation, residual and leaky-ReLU kernels
//! against their f64 twins on both backends; training recovers a random
//! decoder; normal-equation residuals are orthogonal to the design; encode
//! then decode is the identity on the decoder's range; bad input exits 2.

use crate::support::*;
use gradfree::kernels::dense::{self, Act};
use gradfree::kernels::{leaky_relu, normal_eq, row_residual};
use gradfree::{Backend, Precision};
use proptest::prelude::*;

#[test]
fn dense_matches_the_twin_on_both_backends() {
    let mut r = rng(3);
    for &(n, k, m) in &[(0, 3, 2), (1, 1, 1), (5, 3, 7), (37, 20, 17), (70, 33, 40)] {
        let a = uniform(&mut r, n * k, -1.0, 1.0);
        let b = uniform(&mut r, k * m, -1.0, 1.0);
        let bias = uniform(&mut r, m, -0.5, 0.5);
        for act in [Act::Identity, Act::Leaky(0.5), Act::InvLeaky(0.3)] {
            let want = dense::reference(&a, k, &b, m, &bias, act);
            for (name, be) in backends() {
                let tol = twin_tol(be.precision());
                let got = be.dense(&a, k, &b, m, &bias, act).unwrap();
                assert_close(
                    &format!("{name} {act:?} {n}x{k}x{m}"),
                    &got,
                    &want,
                    tol,
                    tol,
                );
            }
            if let Some(ctx) = gpu(Precision::F32) {
                let got = gradfree::kernels::dense::gpu_tiled(
                    &ctx,
                    Precision::F32,
                    &a,
                    k,
                    &b,
                    m,
                    &bias,
                    act,
                    7,
                );
                assert_close("gpu tiled", &got.unwrap(), &want, 1e-4, 1e-4);
            }
        }
    }
    // More than 65535 workgroups (16 × 16 outputs each): a 2-D grid.
    if let Some(ctx) = gpu(Precision::F32) {
        let n = 16 * 65536 + 3;
        let a = uniform(&mut r, n, -1.0, 1.0);
        let want = dense::reference(&a, 1, &[2.0], 1, &[0.5], Act::Leaky(0.5));
        let got = gradfree::kernels::dense::gpu(
            &ctx,
            Precision::F32,
            &a,
            1,
            &[2.0],
            1,
            &[0.5],
            Act::Leaky(0.5),
        );
        assert_close("gpu > 65535 workgroups", &got.unwrap(), &want, 1e-6, 1e-6);
    }
}

#[test]
fn normal_eq_matches_the_twin_on_both_backends() {
    let mut r = rng(4);
    for &(n, p, q) in &[(0, 2, 3), (1, 1, 1), (37, 3, 5), (1100, 17, 20), (5, 0, 4)] {
        let h = uniform(&mut r, n * p, -1.0, 1.0);
        let z = uniform(&mut r, n * q, -1.0, 1.0);
        let want = normal_eq::reference(&h, p, &z, q);
        for (name, be) in backends() {
            let tol = twin_tol(be.precision());
            let got = be.normal_eq(&h, p, &z, q).unwrap();
            // Sums over up to 1100 items: scale the tolerance.
            let tol = tol * (n as f64).max(1.0);
            assert_close(&format!("{name} {n}x{p}x{q}"), &got, &want, tol, tol);
        }
        if let Some(ctx) = gpu(Precision::F64) {
            // Blocks of 10 items: partial sums added on the host.
            let got =
                gradfree::kernels::normal_eq::gpu(&ctx, Precision::F64, &h, p, &z, q, 10).unwrap();
            assert_close("gpu blocks", &got, &want, 1e-11, 1e-11);
        }
    }
    // More than 65535 workgroups: one item, p = 0, q ≈ 2²⁰ (one 16-wide
    // column tile each).
    if let Some(ctx) = gpu(Precision::F32) {
        let q = 16 * 65536 + 5;
        let z = uniform(&mut r, q, -1.0, 1.0);
        let want = normal_eq::reference(&[], 0, &z, q);
        let got =
            gradfree::kernels::normal_eq::gpu(&ctx, Precision::F32, &[], 0, &z, q, 4).unwrap();
        assert_close("gpu > 65535 workgroups", &got, &want, 1e-6, 1e-6);
    }
}

#[test]
fn row_residual_and_leaky_relu_match_the_twins() {
    let mut r = rng(5);
    for &(n, d) in &[(0, 3), (1, 1), (65, 7), (300, 1)] {
        let a = uniform(&mut r, n * d, -1.0, 1.0);
        let b = uniform(&mut r, n * d, -1.0, 1.0);
        let want = row_residual::reference(&a, &b, d);
        for (name, be) in backends() {
            let tol = twin_tol(be.precision());
            let got = be.row_residual(&a, &b, d).unwrap();
            assert_close(&format!("{name} residual {n}x{d}"), &got, &want, tol, tol);
            for inverse in [false, true] {
                let want = leaky_relu::reference(&a, 0.4, inverse);
                let got = be.leaky_relu(&a, 0.4, inverse).unwrap();
                assert_close(&format!("{name} leaky {inverse}"), &got, &want, tol, tol);
            }
        }
    }
    // More than 65535 workgroups of 64.
    if let Some(ctx) = gpu(Precision::F32) {
        let n = 64 * 65536 + 9;
        let a = uniform(&mut r, n, -1.0, 1.0);
        let zeros = vec![0.0; n];
        let got =
            gradfree::kernels::row_residual::gpu(&ctx, Precision::F32, &a, &zeros, 1).unwrap();
        assert_close(
            "gpu residual big",
            &got,
            &row_residual::reference(&a, &zeros, 1),
            1e-6,
            1e-6,
        );
        let got = gradfree::kernels::leaky_relu::gpu(&ctx, Precision::F32, &a, 0.5, false).unwrap();
        assert_close(
            "gpu leaky big",
            &got,
            &leaky_relu::reference(&a, 0.5, false),
            1e-6,
            1e-6,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Solving the normal equations gives a residual orthogonal to the
    /// design [H, 1]: [H,1]ᵀ(Z − [H,1]X) = 0.
    #[test]
    fn normal_equation_residuals_are_orthogonal_to_the_design(
        n in 8usize..40, p in 1usize..5, q in 1usize..4, seed in 0u64..1000,
    ) {
        let mut r = rng(seed);
        let h = uniform(&mut r, n * p, -1.0, 1.0);
        let z = uniform(&mut r, n * q, -1.0, 1.0);
        let be = Backend::cpu(Precision::F64);
        let (x, _) = gradfree::methods::starnet::solve_normal(&be.normal_eq(&h, p, &z, q).unwrap(), p, q).unwrap();
        for a in 0..=p {
            for c in 0..q {
                let mut s = 0.0;
                for i in 0..n {
                    let xi = |j: usize| if j < p { h[i * p + j] } else { 1.0 };
                    let fit: f64 = (0..=p).map(|j| xi(j) * x[j * q + c]).sum();
                    s += xi(a) * (z[i * q + c] - fit);
                }
                prop_assert!(s.abs() < 1e-9, "design column {a}, output {c}: {s}");
            }
        }
    }
}

/// Data from a random decoder of the given widths (codes ~ N(0, 1)).
fn random_decoder_data(
    widths: &[usize],
    n: usize,
    seed: u64,
) -> (gradfree::methods::starnet::StarNet, Vec<f64>, Vec<f64>) {
    use rand::SeedableRng;
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let layers: Vec<_> = widths
        .windows(2)
        .map(|p| {
            let mut l = gradfree::methods::starnet::Layer::random(p[0], p[1], &mut r);
            l.c = uniform(&mut r, p[1], -0.5, 0.5);
            l
        })
        .collect();
    let d0 = widths[0];
    let mut eye = vec![0.0; d0 * d0];
    (0..d0).for_each(|i| eye[i * d0 + i] = 1.0);
    let net = gradfree::methods::starnet::StarNet {
        widths: widths.to_vec(),
        alpha: 0.5,
        layers,
        code_mean: vec![0.0; d0],
        code_chol: eye,
    };
    let codes = uniform(&mut r, n * d0, -2.0, 2.0);
    let x = net.decode(&Backend::cpu(Precision::F64), &codes).unwrap();
    (net, codes, x)
}

#[test]
fn training_recovers_a_random_one_layer_decoder_on_both_backends() {
    let (_, _, x) = random_decoder_data(&[4, 12], 300, 7);
    let s = gradfree::methods::starnet::Settings {
        epochs: 8,
        alpha: 0.5,
        weight_sample: None,
        seed: 1,
        conv: vec![],
    };
    for (name, be) in backends() {
        let tol = twin_tol(be.precision());
        let mut session = gradfree::train::Session::silent(&be).unwrap();
        let (net, reports) =
            gradfree::methods::starnet::train(&be, &mut session, &x, &[4, 12], &s).unwrap();
        let last = reports.last().unwrap().rms;
        // Exact data of rank 4 through a(·): the fit is exact to rounding.
        assert!(last < 1e3 * tol, "{name}: final rms {last}");
        let (codes, scores) = net.encode(&be, &x).unwrap();
        let back = net.decode(&be, &codes).unwrap();
        assert_close(
            &format!("{name} decode∘encode"),
            &back,
            &x,
            1e3 * tol,
            1e3 * tol,
        );
        assert!(scores.iter().all(|&s| s < 1e3 * tol), "{name}: residuals");
    }
}

#[test]
fn encode_then_decode_is_the_identity_on_the_decoders_range() {
    let (net, codes, x) = random_decoder_data(&[3, 5, 9], 50, 11);
    for (name, be) in backends() {
        let tol = twin_tol(be.precision());
        let (got, scores) = net.encode(&be, &x).unwrap();
        assert_close(&format!("{name} codes"), &got, &codes, 1e3 * tol, 1e3 * tol);
        assert!(
            scores.iter().all(|&s| s < 1e3 * tol),
            "{name}: residuals on the range"
        );
        let back = net.decode(&be, &got).unwrap();
        assert_close(&format!("{name} data"), &back, &x, 1e3 * tol, 1e3 * tol);
    }
    // Off the range, the score is the distance to it: positive.
    let mut off = x.clone();
    off[0] += 1.0;
    let (_, scores) = net.encode(&Backend::cpu(Precision::F64), &off).unwrap();
    assert!(
        scores[1] > 1e-3,
        "top-layer residual of a perturbed item: {}",
        scores[1]
    );
}

#[test]
fn two_layer_training_reconstructs_well() {
    let (_, _, x) = random_decoder_data(&[3, 6, 10], 400, 5);
    let s = gradfree::methods::starnet::Settings {
        epochs: 5,
        alpha: 0.5,
        weight_sample: Some(200),
        seed: 2,
        conv: vec![],
    };
    let be = Backend::cpu(Precision::F64);
    let (net, _) = gradfree::methods::starnet::train(
        &be,
        &mut gradfree::train::Session::silent(&be).unwrap(),
        &x,
        &[3, 6, 10],
        &s,
    )
    .unwrap();
    let (codes, _) = net.encode(&be, &x).unwrap();
    let back = net.decode(&be, &codes).unwrap();
    let (rms, _) = gradfree::methods::starnet::errors(&be, &back, &x, 10).unwrap();
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let spread = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    assert!(rms < 0.2 * spread, "rms {rms} vs data spread {spread}");
    // Saved and loaded models decode identically.
    let again =
        gradfree::methods::starnet::StarNet::from_bytes(&net.to_bytes().unwrap(), "m").unwrap();
    assert_eq!(again.decode(&be, &codes).unwrap(), back);
}

#[test]
fn shrinking_widths_are_rejected() {
    assert!(gradfree::methods::starnet::check_widths(&[8, 4, 10]).is_err());
    assert!(gradfree::methods::starnet::check_widths(&[8]).is_err());
    assert_eq!(
        gradfree::methods::starnet::check_widths(&[4, 4, 10])
            .unwrap()
            .len(),
        1
    );
    assert!(
        gradfree::methods::starnet::check_widths(&[2, 4, 10])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn cli_trains_encodes_decodes_samples_and_scores() {
    let dir = temp_dir("starnet_cli");
    let (_, _, x) = random_decoder_data(&[4, 8, 16], 120, 3);
    let data = dir.join("x.csv");
    let csv: String = x
        .chunks(16)
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    std::fs::write(&data, csv).unwrap();
    let out = dir.join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = run_cli(&[
        "starnet",
        "train",
        "--data",
        d,
        "--layers",
        "4,8",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--out",
        o,
        "--quiet",
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    // 16 values per row: 4x4 images, so PNGs are written.
    for f in [
        "model.safetensors",
        "metrics.jsonl",
        "summary.json",
        "layer1.png",
        "layer2.png",
        "samples.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let model = out.join("model.safetensors");
    let m = model.to_str().unwrap();
    let enc = dir.join("enc");
    let r = run_cli(&[
        "starnet",
        "encode",
        "--model",
        m,
        "--data",
        d,
        "--device",
        "cpu",
        "--out",
        enc.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    let codes = enc.join("codes.csv");
    let dec = dir.join("dec");
    let r = run_cli(&[
        "starnet",
        "decode",
        "--model",
        m,
        "--codes",
        codes.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        dec.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    assert_eq!(
        std::fs::read_to_string(dec.join("decoded.csv"))
            .unwrap()
            .lines()
            .count(),
        120
    );
    let sc = dir.join("score");
    let r = run_cli(&[
        "starnet",
        "score",
        "--model",
        m,
        "--data",
        d,
        "--device",
        "cpu",
        "--out",
        sc.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    let first = std::fs::read_to_string(sc.join("scores.csv")).unwrap();
    assert_eq!(
        first.lines().next().unwrap().split(',').count(),
        2,
        "one score per layer"
    );
    let sa = dir.join("sample");
    let r = run_cli(&[
        "starnet",
        "sample",
        "--model",
        m,
        "--count",
        "5",
        "--device",
        "cpu",
        "--out",
        sa.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    // Conv-unpool layers on the 4×4 "images": 2×2×2 latents → 1×4×4.
    let r = run_cli(&[
        "starnet", "train", "--data", d, "--conv", "2:3x3:2", "--epochs", "2", "--device", "cpu",
        "--quiet",
    ]);
    assert!(r.status.success(), "{}", output_text(&r));
    // Unsupported architectures and mismatched sizes exit 2.
    for bad in [
        vec![
            "starnet", "train", "--data", d, "--conv", "5:3x3:2", "--device", "cpu",
        ],
        vec![
            "starnet", "train", "--data", d, "--conv", "2:2x2:2", "--device", "cpu",
        ],
        vec![
            "starnet", "train", "--data", d, "--conv", "2:3x3:3", "--device", "cpu",
        ],
        vec![
            "starnet", "train", "--data", d, "--layers", "8,4", "--device", "cpu",
        ],
        vec![
            "starnet", "train", "--data", d, "--layers", "4,32", "--device", "cpu",
        ],
        vec![
            "starnet",
            "train",
            "--data",
            d,
            "--image-shape",
            "3x3",
            "--device",
            "cpu",
        ],
        vec![
            "starnet",
            "encode",
            "--model",
            m,
            "--data",
            codes.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        vec![
            "starnet", "decode", "--model", m, "--codes", d, "--device", "cpu",
        ],
    ] {
        let r = run_cli(&bad);
        assert_eq!(r.status.code(), Some(2), "{bad:?}: {}", output_text(&r));
    }
}

#[test]
fn conv_unpool_layers_match_a_direct_convolution_and_their_solves_are_exact() {
    use gradfree::methods::starnet::conv::{ConvShape, parse_spec};
    use gradfree::methods::starnet::{Layer, Settings, StarNet, train};
    let sh = ConvShape {
        c_in: 2,
        c_out: 1,
        k: 3,
        u: 2,
        side: 5,
    };
    let mut r = rng(8);
    let kernels = uniform(&mut r, sh.conv_channels() * sh.patch(), -1.0, 1.0);
    let bias = uniform(&mut r, sh.conv_channels(), -0.2, 0.2);
    let layer = Layer::from_conv(sh, kernels.clone(), bias.clone());
    let be = Backend::cpu(Precision::F64);
    let n = 60;
    let h = uniform(&mut r, n * sh.d_in(), -1.0, 1.0);
    let got = layer.forward(&be, &h, None).unwrap();
    let want =
        gradfree::kernels::conv_unpool::reference_forward(&sh, &kernels, &bias, &h, Act::Identity);
    assert_close("conv-unpool as W h + c", &got, &want, 1e-12, 1e-12);
    // And as the dense layer of the materialized W.
    let dense = Layer {
        conv: None,
        ..layer.clone()
    };
    let got = dense.forward(&be, &h, None).unwrap();
    assert_close("materialized W h + c", &got, &want, 1e-12, 1e-12);
    // Each half-step is exact: with the true latents SW returns the true
    // kernels, and with the true kernels SL returns the true latents (both
    // backends). From random kernels the alternation only decreases the
    // error (slowly: 76 kernel parameters against 50 latents per item).
    let zhat = layer.forward(&be, &h, None).unwrap();
    for (name, be) in backends() {
        let tol = twin_tol(be.precision());
        let mut fresh = Layer::random_conv(sh, &mut r);
        fresh.solve_weights(&be, &h, &zhat).unwrap();
        let (_, k, b) = fresh.conv.clone().unwrap();
        assert_close(
            &format!("{name} SW kernels"),
            &k,
            &kernels,
            1e2 * tol,
            1e2 * tol,
        );
        assert_close(
            &format!("{name} SW biases"),
            &b,
            &bias,
            1e2 * tol,
            1e2 * tol,
        );
        let (lat, _) = layer.solve_latents(&be, &zhat).unwrap();
        assert_close(
            &format!("{name} SL latents"),
            &lat,
            &h,
            1e2 * tol,
            1e2 * tol,
        );
    }
    let x = layer.forward(&be, &h, Some(0.5)).unwrap();
    let s = Settings {
        epochs: 6,
        alpha: 0.5,
        weight_sample: None,
        seed: 3,
        conv: vec![sh],
    };
    let mut session = gradfree::train::Session::silent(&be).unwrap();
    let (net, reports) = train(&be, &mut session, &x, &[sh.d_in(), sh.d_out()], &s).unwrap();
    let rms: Vec<f64> = reports.iter().map(|e| e.rms).collect();
    assert!(
        rms.windows(2).all(|w| w[1] <= w[0] + 1e-12),
        "SL/SW never increase the error: {rms:?}"
    );
    let again = StarNet::from_bytes(&net.to_bytes().unwrap(), "m").unwrap();
    assert_eq!(again.layers[0].w, net.layers[0].w, "conv model round trip");
    // The spec: from the latent up; sides must divide; latents must be determined.
    let shapes = parse_spec("6:7x7:2,2:7x7:2", 1, 28).unwrap();
    assert_eq!(
        (shapes[0].d_in(), shapes[0].d_out(), shapes[1].d_out()),
        (294, 392, 784)
    );
    assert!(parse_spec("6:6x6:2", 1, 28).is_err(), "even kernel");
    assert!(
        parse_spec("2:3x3:3", 1, 28).is_err(),
        "28 is not a multiple of 3"
    );
    assert!(parse_spec("5:3x3:2", 1, 28).is_err(), "5 > 1·2² channels");
    assert!(parse_spec("2:3x3", 1, 28).is_err(), "syntax");
}

#[test]
fn conv_unpool_operators_match_their_twins_on_both_backends() {
    use gradfree::kernels::conv_unpool::{
        self, ConvShape, reference_forward, reference_normal_eq, reference_transpose,
    };
    let shapes = [
        ConvShape {
            c_in: 2,
            c_out: 3,
            k: 3,
            u: 2,
            side: 5,
        },
        ConvShape {
            c_in: 1,
            c_out: 1,
            k: 5,
            u: 1,
            side: 3,
        },
        ConvShape {
            c_in: 3,
            c_out: 1,
            k: 1,
            u: 3,
            side: 2,
        },
    ];
    let mut r = rng(31);
    for sh in shapes {
        let kernels = uniform(&mut r, sh.conv_channels() * sh.patch(), -1.0, 1.0);
        let bias = uniform(&mut r, sh.conv_channels(), -0.5, 0.5);
        for &n in SIZES.iter().take(3) {
            let h = uniform(&mut r, n * sh.d_in(), -1.0, 1.0);
            let z = uniform(&mut r, n * sh.d_out(), -1.0, 1.0);
            let act = Act::Leaky(0.3);
            let fwd = reference_forward(&sh, &kernels, &bias, &h, act);
            let tr = reference_transpose(&sh, &kernels, &z);
            let ne = reference_normal_eq(&sh, &h, &z);
            // The transpose is the adjoint: <W h, z> = <h, Wᵀ z>.
            let lin = reference_forward(&sh, &kernels, &vec![0.0; bias.len()], &h, Act::Identity);
            let lhs: f64 = lin.iter().zip(&z).map(|(a, b)| a * b).sum();
            let rhs: f64 = h.iter().zip(&tr).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-9 * (1.0 + lhs.abs()),
                "{sh:?}: adjoint"
            );
            for (name, be) in backends() {
                let tol = twin_tol(be.precision());
                let what = format!("{name} {sh:?} n={n}");
                let got = be.conv_forward(&sh, &kernels, &bias, &h, act).unwrap();
                assert_close(&format!("{what} forward"), &got, &fwd, tol, tol);
                let got = be.conv_transpose(&sh, &kernels, &z).unwrap();
                assert_close(&format!("{what} transpose"), &got, &tr, tol, tol);
                let got = be.conv_normal_eq(&sh, &h, &z).unwrap();
                assert_close(
                    &format!("{what} normal eq"),
                    &got,
                    &ne,
                    10.0 * tol,
                    10.0 * tol,
                );
            }
            // Chunks of 7 items on the GPU (partial sums added on the host).
            if let Some(ctx) = gpu(Precision::F32) {
                let p = Precision::F32;
                let got = gradfree::kernels::conv_unpool::gpu_forward(
                    &ctx, p, &sh, &kernels, &bias, &h, act, 7,
                )
                .unwrap();
                assert_close("gpu chunked forward", &got, &fwd, 1e-4, 1e-4);
                let got =
                    gradfree::kernels::conv_unpool::gpu_transpose(&ctx, p, &sh, &kernels, &z, 7)
                        .unwrap();
                assert_close("gpu chunked transpose", &got, &tr, 1e-4, 1e-4);
                let got =
                    gradfree::kernels::conv_unpool::gpu_normal_eq(&ctx, p, &sh, &h, &z, 7).unwrap();
                assert_close("gpu chunked normal eq", &got, &ne, 1e-3, 1e-3);
            }
        }
    }
    // More than 65535 workgroups: 1100 items of 64² values (forward and
    // transpose, 64 per workgroup), and 65537 tiles of C (u = 1024).
    if let Some(ctx) = gpu(Precision::F32) {
        let p = Precision::F32;
        let sh = ConvShape {
            c_in: 1,
            c_out: 1,
            k: 1,
            u: 1,
            side: 64,
        };
        let n = 1100;
        assert!(n * sh.d_out() > 65_535 * 64);
        let (kernels, bias) = (vec![0.75], vec![0.25]);
        let h = uniform(&mut r, n * sh.d_in(), -1.0, 1.0);
        let got = gradfree::kernels::conv_unpool::gpu_forward(
            &ctx,
            p,
            &sh,
            &kernels,
            &bias,
            &h,
            Act::Identity,
            n,
        );
        let want = reference_forward(&sh, &kernels, &bias, &h, Act::Identity);
        assert_close(
            "gpu forward > 65535 workgroups",
            &got.unwrap(),
            &want,
            1e-6,
            1e-6,
        );
        let got =
            gradfree::kernels::conv_unpool::gpu_transpose(&ctx, p, &sh, &kernels, &h, n).unwrap();
        let want = reference_transpose(&sh, &kernels, &h);
        assert_close("gpu transpose > 65535 workgroups", &got, &want, 1e-6, 1e-6);
        let sh = ConvShape {
            c_in: 1,
            c_out: 1,
            k: 1,
            u: 1024,
            side: 1,
        };
        let cols = sh.patch() + 1 + sh.conv_channels();
        assert!(cols.div_ceil(conv_unpool::GPU_TILE) > 65_535);
        let h = vec![0.5];
        let z = uniform(&mut r, sh.d_out(), -1.0, 1.0);
        let got = gradfree::kernels::conv_unpool::gpu_normal_eq(&ctx, p, &sh, &h, &z, 1).unwrap();
        let want = reference_normal_eq(&sh, &h, &z);
        assert_close("gpu normal eq > 65535 workgroups", &got, &want, 1e-6, 1e-6);
    }
}

/// A product whose inner dimension passes llvmpipe's loop limit in one
/// invocation (an SGD weight gradient over 70,000 items): on lavapipe it
/// is split over dispatches, where llvmpipe used to end the loops silently
/// (17% off at this size, 3% already at 60,000). The bias and activation
/// come once, at the end. Host values and held tiles, f64.
#[test]
fn dense_products_hold_past_llvmpipes_loop_limit() {
    let Some(ctx) = gpu(Precision::F64) else {
        return;
    };
    let (n, k, m) = (20, 70_000, 10);
    let mut r = rng(41);
    let a = uniform(&mut r, n * k, -1.0, 1.0);
    let b = uniform(&mut r, k * m, -1.0, 1.0);
    let bias = uniform(&mut r, m, -50.0, 50.0);
    let act = Act::Leaky(0.3);
    let want = dense::reference(&a, k, &b, m, &bias, act);
    let got = dense::gpu(&ctx, Precision::F64, &a, k, &b, m, &bias, act).unwrap();
    assert_close("dense", &got, &want, 1e-9, 1e-9);
    let be = Backend::gpu(ctx, Precision::F64);
    let held = be.hold(a.clone(), k).unwrap();
    let got = be.dense_held(&held, &b, m, &bias, act).unwrap();
    assert_close("held dense", &got.into_values().unwrap(), &want, 1e-9, 1e-9);
}

/// Normal equations whose rows pass llvmpipe's loop limit in one
/// invocation (6,000 items × 14² positions: 73,500 slabs of 16 rows, at
/// least one loop iteration each): on lavapipe they are split over
/// dispatches, where llvmpipe used to end the loops silently. Both GPU
/// paths, host values and held tiles.
#[test]
fn conv_normal_equations_hold_past_llvmpipes_loop_limit() {
    use gradfree::kernels::conv_unpool::{ConvShape, reference_normal_eq};
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let sh = ConvShape {
        c_in: 1,
        c_out: 1,
        k: 3,
        u: 1,
        side: 14,
    };
    let n = 6000;
    let mut r = rng(37);
    let h = uniform(&mut r, n * sh.d_in(), -1.0, 1.0);
    let z = uniform(&mut r, n * sh.d_out(), -1.0, 1.0);
    let want = reference_normal_eq(&sh, &h, &z);
    let be = Backend::gpu(ctx, Precision::F32);
    let got = be.conv_normal_eq(&sh, &h, &z).unwrap();
    // f32 sums of 1.2 million products (the loops cut short were 11% off).
    assert_close("normal eq", &got, &want, 2e-3, 1e-2);
    let hh = be.hold(h.clone(), sh.d_in()).unwrap();
    let zh = be.hold(z.clone(), sh.d_out()).unwrap();
    let got = be.conv_normal_eq_held(&sh, &hh, &zh).unwrap();
    assert_close("held normal eq", &got, &want, 2e-3, 1e-2);
}

#[test]
fn training_recovers_a_random_conv_unpool_decoder_on_both_backends() {
    use gradfree::methods::starnet::conv::ConvShape;
    use gradfree::methods::starnet::{Layer, Settings, train};
    let sh = ConvShape {
        c_in: 1,
        c_out: 1,
        k: 3,
        u: 2,
        side: 4,
    };
    let mut r = rng(12);
    let truth = Layer::from_conv(
        sh,
        uniform(&mut r, sh.conv_channels() * sh.patch(), -1.0, 1.0),
        uniform(&mut r, sh.conv_channels(), -0.3, 0.3),
    );
    let n = 200;
    let h = uniform(&mut r, n * sh.d_in(), -2.0, 2.0);
    let x = truth
        .forward(&Backend::cpu(Precision::F64), &h, Some(0.5))
        .unwrap();
    let s = Settings {
        epochs: 40,
        alpha: 0.5,
        weight_sample: None,
        seed: 5,
        conv: vec![sh],
    };
    for (name, be) in backends() {
        let tol = twin_tol(be.precision());
        let mut session = gradfree::train::Session::silent(&be).unwrap();
        let (_, reports) = train(&be, &mut session, &x, &[sh.d_in(), sh.d_out()], &s).unwrap();
        let rms: Vec<f64> = reports.iter().map(|e| e.rms).collect();
        // Linear convergence (about ×0.8 per epoch here) from rms ≈ 0.7.
        let last = *rms.last().unwrap();
        assert!(
            last < 1e-4_f64.max(1e2 * tol) && last < 1e-3 * rms[0],
            "{name}: final rms {last} ({rms:?})"
        );
    }
}

#[test]
fn held_operands_give_the_host_paths_bits_on_every_backend() {
    let mut r = rng(11);
    // 2 × 8192 + 37 items: three tiles of the normal equations' block on a GPU.
    for &(n, k, m) in &[(0, 3, 2), (5, 3, 7), (2 * 8192 + 37, 6, 4)] {
        let a = uniform(&mut r, n * k, -1.0, 1.0);
        let b = uniform(&mut r, k * m, -1.0, 1.0);
        let bias = uniform(&mut r, m, -0.5, 0.5);
        let z = uniform(&mut r, n * m, -1.0, 1.0);
        for (name, be) in backends() {
            let what = format!("{name} {n}x{k}x{m}");
            let held_a = be.hold(a.clone(), k).unwrap();
            let held_z = be.hold(z.clone(), m).unwrap();
            assert_eq!((held_a.rows(), held_a.cols()), (n, k), "{what}");
            // Held in the working precision at most.
            assert_close(&what, &held_a.values().unwrap(), &a, 1e-7, 0.0);
            for act in [Act::Identity, Act::Leaky(0.5)] {
                let want = be.dense(&a, k, &b, m, &bias, act).unwrap();
                let h = be.dense_held(&held_a, &b, m, &bias, act).unwrap();
                assert_eq!(h.values().unwrap().as_ref(), want, "{what} {act:?} dense");
                assert_eq!(
                    be.normal_eq_held(&h, &held_z).unwrap(),
                    be.normal_eq(&want, m, &z, m).unwrap(),
                    "{what} {act:?} normal equations"
                );
                assert_eq!(
                    be.row_residual_held(&h, &held_z).unwrap(),
                    be.row_residual(&want, &z, m).unwrap(),
                    "{what} {act:?} row residuals"
                );
                assert_eq!(h.into_values().unwrap(), want, "{what} moved out");
            }
        }
    }
}

#[test]
fn held_operands_reject_shapes_that_do_not_fit() {
    for (name, be) in backends() {
        let e = be.hold(vec![1.0; 5], 2).unwrap_err();
        assert!(e.to_string().contains("rows of 2"), "{name}: {e}");
        let a = be.hold(vec![1.0; 6], 2).unwrap();
        let z = be.hold(vec![1.0; 4], 2).unwrap();
        let e = be.normal_eq_held(&a, &z).unwrap_err();
        assert!(
            e.to_string().contains("3 latent rows against 2"),
            "{name}: {e}"
        );
        let e = be.row_residual_held(&a, &z).unwrap_err();
        assert!(e.to_string().contains("3 × 2 against 2 × 2"), "{name}: {e}");
        let e = be
            .dense_held(&a, &[1.0; 3], 2, &[0.0; 2], Act::Identity)
            .unwrap_err();
        assert!(e.to_string().contains("3 weights"), "{name}: {e}");
        let e = be.dense_held(&a, &[], 0, &[], Act::Identity).unwrap_err();
        assert!(e.to_string().contains("0 outputs"), "{name}: {e}");
    }
}

#[test]
fn row_tiles_match_the_row_blocked_launchers() {
    use gradfree::gpu::RowTiles;
    let mut r = rng(12);
    let (n, p, q, tile) = (103, 5, 3, 10);
    let h = uniform(&mut r, n * p, -1.0, 1.0);
    let z = uniform(&mut r, n * q, -1.0, 1.0);
    let b = uniform(&mut r, p * q, -1.0, 1.0);
    let bias = uniform(&mut r, q, -0.5, 0.5);
    for prec in [Precision::F32, Precision::F64] {
        let Some(ctx) = gpu(prec) else { continue };
        let ht = RowTiles::upload(&ctx, prec, &h, p, tile).unwrap();
        let zt = RowTiles::upload(&ctx, prec, &z, q, tile).unwrap();
        assert_eq!((ht.tiles().len(), ht.tile(10)), (11, 100..103));
        let got = dense::gpu_rows(&ctx, &ht, &b, q, &bias, Act::Leaky(0.3)).unwrap();
        let want = dense::gpu_tiled(&ctx, prec, &h, p, &b, q, &bias, Act::Leaky(0.3), tile);
        assert_eq!(got.read().unwrap(), want.unwrap(), "{prec} dense");
        assert_eq!(
            normal_eq::gpu_rows(&ctx, &ht, &zt).unwrap(),
            normal_eq::gpu(&ctx, prec, &h, p, &z, q, tile).unwrap(),
            "{prec} normal equations in blocks of the tiles"
        );
        assert_eq!(
            row_residual::gpu_rows(&ctx, &got, &zt).unwrap(),
            row_residual::gpu(&ctx, prec, &got.read().unwrap(), &z, q).unwrap(),
            "{prec} row residuals"
        );
    }
}

/// A layer's epochs on a GPU send the device only the layer's small
/// matrices: with bindings of 4608 bytes (tiles of 96 items of 12 values,
/// the last partial) the operands stay in four tiles each, and eight epochs
/// send about as much as two; a conv-unpool layer's the same.
#[test]
fn gpu_layers_keep_their_operands_on_the_device_across_epochs() {
    use gradfree::kernels::conv_unpool::ConvShape;
    let name = "starnet::gpu_layers_keep_their_operands_on_the_device_across_epochs";
    if !in_own_process(name, &[("GRADFREE_MAX_BINDING_BYTES", "4608")]) {
        return;
    }
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let be = Backend::gpu(ctx, Precision::F32);
    let sent = |x: &[f64], widths: &[usize], conv: Vec<ConvShape>, epochs: usize| {
        let s = gradfree::methods::starnet::Settings {
            epochs,
            alpha: 0.5,
            weight_sample: None,
            seed: 1,
            conv,
        };
        let before = gradfree::gpu::work_counts();
        let mut session = gradfree::train::Session::silent(&be).unwrap();
        let (_, reports) =
            gradfree::methods::starnet::train(&be, &mut session, x, widths, &s).unwrap();
        let last = reports.last().unwrap().rms;
        let after = gradfree::gpu::work_counts();
        (
            last,
            after.bytes_to_device - before.bytes_to_device,
            after.bytes_from_device - before.bytes_from_device,
        )
    };
    // Dense: T and Ẑ once (2 × 300 × 12 f32 values); per epoch the
    // layer's matrices, uniforms, the normal equations' four partial sums
    // and 2 × 300 residuals back, never a 300 × 12 operand.
    let (_, _, x) = random_decoder_data(&[4, 12], 300, 7);
    let (rms, up2, down2) = sent(&x, &[4, 12], vec![], 2);
    assert!(rms < 1e3 * twin_tol(Precision::F32), "final rms {rms}");
    let (_, up8, down8) = sent(&x, &[4, 12], vec![], 8);
    eprintln!("dense: sent {up2} / {up8} bytes, read {down2} / {down8} bytes in 2 / 8 epochs");
    assert!(up2 >= 2 * 300 * 12 * 4, "sent {up2} bytes");
    let (up, down) = ((up8 - up2) / 6, (down8 - down2) / 6);
    assert!(up < 300 * 4 * 4, "{up} bytes up per epoch");
    assert!(down < 2 * 300 * 4 + 4 * 1024, "{down} bytes down per epoch");
    // Conv-unpool, 16 → 64 values per item, tiles of 18 items.
    let sh = ConvShape {
        c_in: 1,
        c_out: 1,
        k: 3,
        u: 2,
        side: 4,
    };
    let mut r = rng(13);
    let x: Vec<f64> = uniform(&mut r, 200 * sh.d_out(), 0.0, 1.0);
    let widths = [sh.d_in(), sh.d_out()];
    let (_, up2, down2) = sent(&x, &widths, vec![sh], 2);
    let (_, up8, down8) = sent(&x, &widths, vec![sh], 8);
    eprintln!("conv: sent {up2} / {up8} bytes, read {down2} / {down8} bytes in 2 / 8 epochs");
    let (up, down) = ((up8 - up2) / 6, (down8 - down2) / 6);
    assert!(up < 200 * 16 * 4, "{up} bytes up per epoch");
    // Residuals and twelve tiles' partial sums: less than one 200 × 16 H.
    assert!(down < 200 * 16 * 4, "{down} bytes down per epoch");
}

#[test]
fn held_conv_unpool_operators_give_the_host_paths_bits_on_every_backend() {
    use gradfree::kernels::conv_unpool::ConvShape;
    let sh = ConvShape {
        c_in: 2,
        c_out: 3,
        k: 3,
        u: 2,
        side: 5,
    };
    let mut r = rng(32);
    // Past one tile of the normal equations' block on a GPU.
    let n = 8192 + 21;
    let kernels = uniform(&mut r, sh.conv_channels() * sh.patch(), -1.0, 1.0);
    let bias = uniform(&mut r, sh.conv_channels(), -0.5, 0.5);
    let h = uniform(&mut r, n * sh.d_in(), -1.0, 1.0);
    let z = uniform(&mut r, n * sh.d_out(), -1.0, 1.0);
    for (name, be) in backends() {
        let held_h = be.hold(h.clone(), sh.d_in()).unwrap();
        let held_z = be.hold(z.clone(), sh.d_out()).unwrap();
        let act = Act::Leaky(0.5);
        let f = be
            .conv_forward_held(&sh, &kernels, &bias, &held_h, act)
            .unwrap();
        let want = be.conv_forward(&sh, &kernels, &bias, &h, act).unwrap();
        assert_eq!(f.into_values().unwrap(), want, "{name} forward");
        let t = be.conv_transpose_held(&sh, &kernels, &held_z).unwrap();
        let want = be.conv_transpose(&sh, &kernels, &z).unwrap();
        assert_eq!(t.into_values().unwrap(), want, "{name} transpose");
        assert_eq!(
            be.conv_normal_eq_held(&sh, &held_h, &held_z).unwrap(),
            be.conv_normal_eq(&sh, &h, &z).unwrap(),
            "{name} normal equations"
        );
        let e = be.conv_normal_eq_held(&sh, &held_z, &held_h).unwrap_err();
        assert!(e.to_string().contains("do not make items"), "{name}: {e}");
        // Rows of another width, even a multiple of the layer's.
        let twice = be
            .hold(h[..2 * 4 * sh.d_in()].to_vec(), 2 * sh.d_in())
            .unwrap();
        let e = be
            .conv_forward_held(&sh, &kernels, &bias, &twice, act)
            .unwrap_err();
        assert!(e.to_string().contains("rows of 100 values"), "{name}: {e}");
        let e = be.conv_transpose_held(&sh, &kernels, &held_h).unwrap_err();
        assert!(
            e.to_string().contains("where the layer takes"),
            "{name}: {e}"
        );
    }
}
