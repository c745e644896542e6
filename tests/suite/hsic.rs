//! HSIC networks: the Gaussian kernel kernel against its f64 twin on both
//! backends, the closed-form W_s units, a generated spiral, and bad inputs.

use crate::support::*;
use gradfree::data::labeled::Labeled;
use gradfree::data::spiral::spiral;
use gradfree::kernels::gauss_kernel;
use gradfree::kernels::kernel_product::{self, Func, Gamma, Spec};
use gradfree::methods::hsic::{self, Unit, Work, WsLayer, WsSettings};
use gradfree::{Backend, Precision};
use proptest::prelude::*;

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol, "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn gauss_kernel_matches_the_twin_on_both_backends() {
    let mut r = rng(5);
    for &(n, m, d) in &[(0, 0, 3), (1, 1, 1), (1, 3, 2), (37, 37, 5), (129, 70, 3)] {
        let a = uniform(&mut r, n * d, -1.0, 1.0);
        let b = if n == m {
            a.clone()
        } else {
            uniform(&mut r, m * d, -1.0, 1.0)
        };
        for zero in [false, true] {
            let want = gauss_kernel::reference(&a, &b, d, 0.7, zero);
            assert_eq!(want.len(), n * m);
            let cpu = Backend::cpu(Precision::F64)
                .gauss_kernel(&a, &b, d, 0.7, zero)
                .unwrap();
            close("cpu f64", &cpu, &want, 1e-14);
            let cpu32 = Backend::cpu(Precision::F32)
                .gauss_kernel(&a, &b, d, 0.7, zero)
                .unwrap();
            close("cpu f32", &cpu32, &want, 2e-6);
            for (prec, tol) in [(Precision::F32, 2e-6), (Precision::F64, 1e-13)] {
                let Some(ctx) = gpu(prec) else { continue };
                let g =
                    gradfree::kernels::gauss_kernel::gpu(&ctx, prec, &a, &b, d, 0.7, zero).unwrap();
                close(&format!("gpu {prec} n={n} m={m}"), &g, &want, tol);
            }
        }
    }
    // More than 65535 workgroups (a 2-D grid), f32.
    let (n, d) = (2100, 2);
    let a = uniform(&mut r, n * d, -1.0, 1.0);
    let want = gauss_kernel::reference(&a, &a, d, 0.5, true);
    if let Some(ctx) = gpu(Precision::F32) {
        let g = gradfree::kernels::gauss_kernel::gpu(&ctx, Precision::F32, &a, &a, d, 0.5, true)
            .unwrap();
        close("gpu big", &g, &want, 2e-6);
        // Row tiles of 27 rows: two tiles, the second partial.
        let (n, d) = (37, 4);
        let a = uniform(&mut r, n * d, -1.0, 1.0);
        let want = gauss_kernel::reference(&a, &a, d, 0.9, false);
        let g = gradfree::kernels::gauss_kernel::gpu_tiled(
            &ctx,
            Precision::F32,
            &a,
            &a,
            d,
            0.9,
            false,
            27,
        );
        close("gpu tiled", &g.unwrap(), &want, 2e-6);
    }
}

#[test]
fn kernel_product_matches_the_twin_on_both_backends() {
    let mut r = rng(9);
    // (rows of A, rows of B, d, columns of M): empty, single, odd, not a
    // multiple of the 16-row / 64-column workgroup tiles, B == A (the CPU's
    // symmetric path needs more than 64 rows and an output at most 32
    // wide: 31 + the squares column is its widest).
    for &(na, nb, d, cols) in &[
        (0, 4, 2, 3),
        (1, 1, 1, 1),
        (3, 5, 2, 1),
        (37, 37, 3, 5),
        (20, 70, 4, 65),
        (50, 130, 2, 130),
        (150, 150, 3, 4),
        (130, 130, 2, 31),
        (200, 200, 2, 0),
        // Gaussian tiles of 16 features or more go through dot products.
        (90, 70, 20, 7),
        (130, 130, 47, 9),
        (70, 70, 16, 40),
    ] {
        // Wide rows: distances on the scale of the narrow ones, and far
        // from the origin (the dot-product form must not cancel).
        let (s, off) = if d > 4 {
            ((4.0 / d as f64).sqrt(), 3.0)
        } else {
            (1.0, 0.0)
        };
        let a = uniform(&mut r, na * d, off - s, off + s);
        let b = uniform(&mut r, nb * d, off - s, off + s);
        // The same slice twice when square, as the callers do.
        let b: &[f64] = if na == nb { &a } else { &b };
        let m = uniform(&mut r, nb * cols, -1.0, 1.0);
        let la: Vec<u32> = (0..na).map(|i| (i % 3) as u32).collect();
        let lb_own: Vec<u32> = (0..nb).map(|j| (j * 7 % 3) as u32).collect();
        let lb: &[u32] = if na == nb { &la } else { &lb_own };
        let p = [0.5, 0.3, 0.2];
        for (func, zero, gamma, squares) in [
            (Func::Gauss { sigma: 0.7 }, false, false, true),
            (Func::Gauss { sigma: 0.4 }, true, true, false),
            (Func::Dist, false, true, true),
        ] {
            if cols == 0 && !squares {
                continue;
            }
            let spec = Spec {
                func,
                zero_diag: zero,
                gamma: gamma.then_some(Gamma { la: &la, lb, p: &p }),
                squares,
                part: (0, 1),
            };
            let want = kernel_product::reference(&a, b, d, &m, cols, &spec);
            assert_eq!(want.len(), na * (cols + squares as usize));
            let what =
                format!("{func:?} zero={zero} gamma={gamma} sq={squares} {na}x{nb}x{d} r={cols}");
            let cpu = Backend::cpu(Precision::F64)
                .kernel_product(&a, b, d, &m, cols, &spec)
                .unwrap();
            assert_close(&format!("cpu f64 {what}"), &cpu, &want, 1e-12, 1e-12);
            let cpu32 = Backend::cpu(Precision::F32)
                .kernel_product(&a, b, d, &m, cols, &spec)
                .unwrap();
            assert_close(&format!("cpu f32 {what}"), &cpu32, &want, 1e-4, 1e-4);
            // The parts of a data-parallel run (row blocks of A, or runs of
            // the symmetric path's partial sums) give the bits of the whole.
            let parts = 3;
            let whole = {
                let mut o = vec![0.0; want.len()];
                kernel_product::cpu(&a, b, d, &m, cols, &spec, &mut o);
                o
            };
            let (mut rows, mut partials, mut thin_seen) = (vec![0.0; want.len()], vec![], None);
            let ctx64 = gpu(Precision::F64);
            let tiled = |spec: &Spec| {
                ctx64.as_ref().map(|ctx| {
                    gradfree::kernels::kernel_product::gpu_tiled(
                        ctx,
                        Precision::F64,
                        &a,
                        b,
                        d,
                        &m,
                        cols,
                        spec,
                        7,
                    )
                    .unwrap()
                })
            };
            let mut gpu_sum = ctx64.as_ref().map(|_| vec![0.0; want.len()]);
            for part in 0..parts {
                let spec = Spec {
                    part: (part, parts),
                    ..spec
                };
                match kernel_product::cpu_part(&a, b, d, &m, cols, &spec) {
                    kernel_product::Part::Rows(v) => {
                        rows.iter_mut().zip(&v).for_each(|(s, x)| *s += x)
                    }
                    kernel_product::Part::Partials { thin, data } => {
                        thin_seen = Some(thin);
                        partials.extend(data);
                    }
                }
                if let (Some(g), Some(gs)) = (tiled(&spec), gpu_sum.as_mut()) {
                    gs.iter_mut().zip(&g).for_each(|(s, v)| *s += v);
                }
            }
            if let Some(thin) = thin_seen {
                kernel_product::add_partials(
                    &partials,
                    na,
                    want.len() / na.max(1),
                    thin,
                    &mut rows,
                );
            }
            assert_eq!(rows, whole, "parts {what}");
            if let (Some(gs), Some(g)) = (gpu_sum, tiled(&spec)) {
                assert_eq!(gs, g, "gpu parts {what}");
            }
            for (prec, tol) in [(Precision::F32, 1e-4), (Precision::F64, 1e-12)] {
                let Some(ctx) = gpu(prec) else { continue };
                let g =
                    gradfree::kernels::kernel_product::gpu(&ctx, prec, &a, b, d, &m, cols, &spec)
                        .unwrap();
                assert_close(&format!("gpu {prec} {what}"), &g, &want, tol, tol);
                // Row tiles of 7 rows of A, the last one partial.
                let g = gradfree::kernels::kernel_product::gpu_tiled(
                    &ctx, prec, &a, b, d, &m, cols, &spec, 7,
                );
                let g = g.unwrap();
                assert_close(&format!("gpu tiled {prec} {what}"), &g, &want, tol, tol);
                // B's rows split over dispatches that resume from the
                // output: the same sums in the same order.
                for b_rows in [16, 48] {
                    let s = gradfree::kernels::kernel_product::gpu_split(
                        &ctx, prec, &a, b, d, &m, cols, &spec, 7, b_rows,
                    )
                    .unwrap();
                    assert!(s == g, "gpu split {b_rows} {prec} {what}");
                }
            }
        }
    }
    // More than 65535 workgroups (64 rows each for a thin output): a 2-D
    // grid, f32.
    if let Some(ctx) = gpu(Precision::F32) {
        let (na, nb) = (64 * 65536 + 5, 3);
        let a = uniform(&mut r, na, -1.0, 1.0);
        let b = uniform(&mut r, nb, -1.0, 1.0);
        let m = vec![1.0, 2.0, 3.0];
        let spec = Spec::dist();
        let want = kernel_product::reference(&a, &b, 1, &m, 1, &spec);
        let g =
            gradfree::kernels::kernel_product::gpu(&ctx, Precision::F32, &a, &b, 1, &m, 1, &spec)
                .unwrap();
        assert_close("gpu > 65535 workgroups", &g, &want, 1e-5, 1e-5);
    }
}

/// A thin Γ-weighted product over 2,100 rows, the shape of the ISM
/// objective's: the GPU kernel before the register-blocked one went wrong
/// on lavapipe from about 1,900 rows with outputs at most 16 wide.
#[test]
fn kernel_product_on_the_gpu_holds_past_two_thousand_rows() {
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let mut r = rng(21);
    let (n, d, cols) = (2100, 20, 11);
    let a = uniform(&mut r, n * d, 0.8, 1.2);
    let m = uniform(&mut r, n * cols, -0.5, 0.5);
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let p = [0.1; 10];
    for func in [Func::Gauss { sigma: 0.7 }, Func::Dist] {
        let spec = Spec {
            func,
            zero_diag: true,
            gamma: Some(Gamma {
                la: &y,
                lb: &y,
                p: &p,
            }),
            squares: true,
            part: (0, 1),
        };
        let want = kernel_product::reference(&a, &a, d, &m, cols, &spec);
        let got = gradfree::kernels::kernel_product::gpu(
            &ctx,
            Precision::F32,
            &a,
            &a,
            d,
            &m,
            cols,
            &spec,
        )
        .unwrap();
        assert_close(
            &format!("gpu f32 {func:?} {n} rows"),
            &got,
            &want,
            1e-4,
            1e-3,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn exp_neg_matches_std(x in 0.0f64..750.0, small in 0.0f64..1e-3) {
        for v in [x, small, 0.0] {
            let (got, want) = (gauss_kernel::exp_neg(v), (-v).exp());
            prop_assert!((got - want).abs() <= 4e-16 * want || (v > 708.0 && got == 0.0),
                "e^-{v}: {got} vs {want}");
        }
    }

    #[test]
    fn kernel_matrices_are_symmetric_with_unit_or_zero_diagonal(
        n in 1usize..12, d in 1usize..5, sigma in 0.05f64..5.0, seed in 0u64..1000,
    ) {
        let a = uniform(&mut rng(seed), n * d, -3.0, 3.0);
        for zero in [false, true] {
            let k = Backend::cpu(Precision::F64).gauss_kernel(&a, &a, d, sigma, zero).unwrap();
            for i in 0..n {
                prop_assert_eq!(k[i * n + i], if zero { 0.0 } else { 1.0 });
                for j in 0..n {
                    prop_assert_eq!(k[i * n + j], k[j * n + i]);
                    prop_assert!((0.0..=1.0).contains(&k[i * n + j]));
                }
            }
        }
    }
}

#[test]
fn ws_units_are_normalized_per_class_sums() {
    // Two classes on a line; one layer with σ = 1 by hand.
    let z = vec![0.0, 0.5, 3.0, 3.5];
    let layer = WsLayer {
        sigma: 1.0,
        sigma_b: 1.0,
        hsic: 0.0,
        candidates: 1,
        units: vec![
            Unit {
                class: 0,
                rows: vec![0, 1],
                norm: 0.0,
            },
            Unit {
                class: 1,
                rows: vec![2, 3],
                norm: 0.0,
            },
        ],
    };
    let k = |a: f64, b: f64| (-(a - b) * (a - b) / 2.0).exp();
    let norm = |r: &[usize]| {
        r.iter()
            .map(|&i| r.iter().map(|&j| k(z[i], z[j])).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    };
    let mut layer = layer;
    for u in &mut layer.units {
        u.norm = norm(&u.rows);
    }
    let be = Backend::cpu(Precision::F64);
    let out = hsic::layer_output(&be, &[0.25, 3.2], &z, 1, &layer, &mut Work::default()).unwrap();
    for (q, &x) in [0.25, 3.2].iter().enumerate() {
        for (u, unit) in layer.units.iter().enumerate() {
            let want = unit.rows.iter().map(|&i| k(x, z[i])).sum::<f64>() / unit.norm;
            assert!((out[q * 2 + u] - want).abs() < 1e-14);
        }
    }
    // A fitted model's first-layer units: per-class rows, ř = √(1ᵀK1).
    let data = spiral(30, 2, 0.02, 3);
    let m = hsic::fit_ws(
        &be,
        &data,
        &WsSettings::for_dataset("spiral"),
        &mut Work::default(),
    )
    .unwrap();
    let l0 = &m.layers[0];
    let (w, input) = &m.inputs[0];
    let kk = gauss_kernel::reference(input, input, *w, l0.sigma, false);
    let n = data.len();
    for (j, u) in l0.units.iter().enumerate() {
        assert_eq!(u.class, j as u32);
        assert_eq!(
            u.rows,
            (0..n)
                .filter(|&i| data.y[i] == j as u32)
                .collect::<Vec<_>>()
        );
        let s: f64 = u
            .rows
            .iter()
            .map(|&a| u.rows.iter().map(|&b| kk[a * n + b]).sum::<f64>())
            .sum();
        assert!((u.norm - s.sqrt()).abs() <= 1e-9 * s.sqrt());
    }
}

fn split(d: &Labeled, every: usize) -> (Labeled, Labeled) {
    let test: Vec<usize> = (0..d.len()).filter(|i| i % every == 0).collect();
    let train: Vec<usize> = (0..d.len()).filter(|i| i % every != 0).collect();
    (d.subset(&train), d.subset(&test))
}

#[test]
fn spiral_is_classified_on_held_out_points_on_both_backends() {
    let (train, test) = split(&spiral(100, 3, 0.03, 7), 5);
    for (_, be) in backends_of(&[Precision::F64], &[Precision::F32]) {
        let mut s = WsSettings::for_dataset("spiral");
        s.seed = 1;
        let mut work = Work::default();
        let m = hsic::fit_ws(&be, &train, &s, &mut work).unwrap();
        let acc = hsic::accuracy(&m.predict(&be, &test.x, &mut work).unwrap(), &test.y);
        assert!(
            acc >= 0.95,
            "{}: held-out accuracy {acc} ({} layers)",
            be.describe(),
            m.layers.len()
        );
        assert!(m.hsic() > 0.1 && work.gwms() > 0.0);
    }
}

#[test]
fn bad_inputs_exit_2_and_fit_predict_round_trip() {
    let dir = temp_dir("hsic");
    let p = |n: &str| dir.join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    let d = spiral(20, 2, 0.02, 1);
    let feats: String =
        d.x.chunks(2)
            .map(|r| format!("{},{}\n", r[0], r[1]))
            .collect();
    let labels: String = d.y.iter().map(|c| format!("{}\n", 3 + 2 * c)).collect();
    std::fs::write(p("x.csv"), &feats).unwrap();
    std::fs::write(p("y.csv"), &labels).unwrap();
    std::fs::write(
        p("short.csv"),
        labels.lines().skip(1).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    std::fs::write(p("one.csv"), "3\n".repeat(d.len())).unwrap();
    std::fs::write(
        p("nan.csv"),
        feats
            .replacen("\n", "\nnan,1\n", 1)
            .lines()
            .take(d.len())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    // `gradfree hsic TASK --device cpu ARGS…`
    let hsic =
        |task: &str, args: &[&str]| run_cli(&[&["hsic", task, "--device", "cpu"], args].concat());
    for (x, y, what) in [
        ("x.csv", "short.csv", "labels"),
        ("x.csv", "one.csv", "two classes"),
        ("nan.csv", "y.csv", ""),
    ] {
        let o = hsic("fit", &["--data", &s(x), "--labels", &s(y), "--quiet"]);
        assert_eq!(o.status.code(), Some(2), "{x} {y}: {}", output_text(&o));
        assert!(output_text(&o).contains(what), "{}", output_text(&o));
    }
    let data = ["--data", &s("x.csv"), "--labels", &s("y.csv")].map(String::from);
    let data: Vec<&str> = data.iter().map(String::as_str).collect();
    let o = hsic("fit", &[&data[..], &["--out", &s("m"), "--quiet"]].concat());
    assert!(o.status.success(), "{}", output_text(&o));
    // W*: fit, save, predict.
    let o = hsic(
        "fit",
        &[
            &data[..],
            &["--solver", "ism", "--out", &s("mi"), "--quiet"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let o = hsic(
        "predict",
        &[&data[..], &["--model", &s("mi/model.safetensors")]].concat(),
    );
    assert!(
        o.status.success() && output_text(&o).contains("accuracy"),
        "{}",
        output_text(&o)
    );
    // The same data as one CSV with the label in the last column.
    let joined: String = feats
        .lines()
        .zip(labels.lines())
        .map(|(f, l)| format!("{f},{l}\n"))
        .collect();
    std::fs::write(p("xy.csv"), joined).unwrap();
    let o = hsic(
        "fit",
        &["--data", &s("xy.csv"), "--out", &s("m2"), "--quiet"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let o = hsic(
        "predict",
        &[
            &data[..],
            &["--model", &s("m/model.safetensors"), "--out", &s("p")],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let t = output_text(&o);
    let acc: f64 = t
        .split("accuracy ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // Predictions are written in the original label values (3 and 5).
    let pred = std::fs::read_to_string(p("p/predictions.csv")).unwrap();
    let agree = pred
        .lines()
        .zip(labels.lines())
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(agree as f64 / d.len() as f64, acc, "{t}");
    assert!(acc >= 0.9, "{t}");
}

#[test]
fn ism_converges_to_a_stationary_point_on_separable_data() {
    use gradfree::methods::hsic::ism::{IsmSettings, fit_ism};
    use nalgebra::DMatrix;
    // Two well-separated blobs in 8-D (so W is a proper subspace).
    let mut r = rng(11);
    let n = 40;
    let d = 8;
    let mut x = uniform(&mut r, n * d, -0.5, 0.5);
    let y: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    for i in 0..n {
        x[i * d] += if y[i] == 1 { 3.0 } else { -3.0 };
    }
    let data = Labeled {
        dim: d,
        classes: 2,
        x: x.clone(),
        y: y.clone(),
    };
    let s = IsmSettings {
        tol: 1e-10,
        max_layers: 1,
        ..Default::default()
    };
    let be = Backend::cpu(Precision::F64);
    let m = fit_ism(&be, &data, &s, &mut Work::default()).unwrap();
    let l = &m.layers[0];
    assert!(
        l.iterations < s.max_iter,
        "ISM did not converge in {} iterations",
        l.iterations
    );
    assert_eq!(m.predict(&x), y);
    // Stationarity: W spans the q-dimensional bottom eigenspace of Φ(W).
    let z = DMatrix::from_fn(n, d, |i, c| (x[i * d + c] - m.mean[c]) / m.std[c]);
    assert!(l.w.ncols() < d, "width {}", l.w.ncols());
    let zw = &z * &l.w;
    let rows: Vec<f64> = (0..n)
        .flat_map(|i| zw.row(i).iter().copied().collect::<Vec<_>>())
        .collect();
    let k = gauss_kernel::reference(&rows, &rows, l.w.ncols(), l.sigma, true);
    let p = [0.5, 0.5];
    let mut psi = DMatrix::from_fn(n, n, |i, j| hsic::gamma(y[i], y[j], &p, 0.5) * k[i * n + j]);
    for j in 0..n {
        let s: f64 = psi.column(j).sum();
        psi[(j, j)] -= s;
    }
    let phi = -(z.transpose() * (&psi * &z));
    let lam = l.w.transpose() * &phi * &l.w;
    let resid = &phi * &l.w - &l.w * &lam;
    assert!(
        resid.norm() <= 1e-6 * phi.norm(),
        "residual {} of {}",
        resid.norm(),
        phi.norm()
    );
    let eig = nalgebra::SymmetricEigen::new(phi.clone()).eigenvalues;
    let mut ev: Vec<f64> = eig.iter().copied().collect();
    ev.sort_by(|a, b| a.total_cmp(b));
    let mut got: Vec<f64> = lam.diagonal().iter().copied().collect();
    got.sort_by(|a, b| a.total_cmp(b));
    for (g, e) in got.iter().zip(&ev) {
        assert!(
            (g - e).abs() <= 1e-6 * phi.norm(),
            "W's eigenvalues {got:?} are not the smallest {ev:?}"
        );
    }
}

#[test]
fn extreme_eigenpairs_match_a_full_decomposition() {
    use gradfree::methods::hsic::eigen::{eigenvalues_desc, extreme_eigenpairs, top_eigenpairs_by};
    use nalgebra::DMatrix;
    let mut r = rng(31);
    for &n in &[1usize, 2, 3, 17, 60] {
        let b = DMatrix::from_vec(n, n, uniform(&mut r, n * n, -1.0, 1.0));
        // Random, and with a 5-fold repeated eigenvalue (a cluster).
        let q = b.clone().qr().q();
        let spec: Vec<f64> = (0..n)
            .map(|i| if i < 5 { 2.0 } else { i as f64 * 0.37 - 3.0 })
            .collect();
        let clustered =
            &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(spec)) * q.transpose();
        for m in [&b + b.transpose(), clustered] {
            let full = nalgebra::SymmetricEigen::new(m.clone());
            let mut want: Vec<f64> = full.eigenvalues.iter().copied().collect();
            want.sort_by(|a, b| a.total_cmp(b));
            let scale = want.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            let all = eigenvalues_desc(&m);
            for (g, w) in all.iter().zip(want.iter().rev()) {
                assert!((g - w).abs() < 1e-12 * scale, "n={n}: {g} vs {w}");
            }
            for largest in [false, true] {
                let k = n.min(7);
                let (v, vals) = extreme_eigenpairs(&m, k, largest);
                for (c, &l) in vals.iter().enumerate() {
                    let w = if largest { want[n - 1 - c] } else { want[c] };
                    assert!((l - w).abs() < 1e-12 * scale, "n={n} value {c}: {l} vs {w}");
                    let res = (&m * v.column(c) - v.column(c) * l).norm();
                    assert!(res < 1e-10 * scale, "n={n} residual {c}: {res}");
                }
                let gram = v.transpose() * &v;
                assert!(
                    (gram - DMatrix::identity(k, k)).norm() < 1e-10,
                    "n={n}: orthonormal"
                );
            }
            // One reduction for all values and the top vectors: the values
            // of eigenvalues_desc exactly, the vectors of extreme_eigenpairs
            // (which bisects for a few values instead of QL's all, so they
            // agree to rounding), and the count chosen from the values it
            // is shown.
            let (top, values) = top_eigenpairs_by(&m, |v| {
                assert_eq!(v.len(), n);
                n.min(4)
            });
            assert_eq!(values, all, "n={n}: the values of eigenvalues_desc");
            let (want_vecs, _) = extreme_eigenpairs(&m, n.min(4), true);
            assert!(
                (top - want_vecs).amax() < 1e-10,
                "n={n}: the vectors of extreme_eigenpairs"
            );
        }
    }
    let (none, values) = top_eigenpairs_by(&DMatrix::zeros(0, 0), |v| v.len());
    assert!(none.is_empty() && values.is_empty());
}

#[test]
fn linear_hsic_matches_the_n_by_n_formula() {
    let mut r = rng(21);
    let (n, f) = (23, 5);
    let phi = nalgebra::DMatrix::from_vec(n, f, uniform(&mut r, n * f, -1.0, 1.0));
    let y: Vec<u32> = (0..n).map(|i| (i * i % 3) as u32).collect();
    let k = &phi * phi.transpose();
    let ky = nalgebra::DMatrix::from_fn(n, n, |i, j| (y[i] == y[j]) as u32 as f64);
    let centered = |m: &nalgebra::DMatrix<f64>| {
        let mut o = m.clone();
        for j in 0..n {
            let mean = m.column(j).sum() / n as f64;
            o.column_mut(j).add_scalar_mut(-mean);
        }
        o
    };
    let (hk, hy) = (centered(&k), centered(&ky));
    let want = hk.component_mul(&hy).sum() / (hk.norm() * hy.norm());
    let got = hsic::ism::linear_hsic(&phi, &y, 3);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn metrics_on_hand_made_outputs() {
    use gradfree::methods::hsic::metrics::{
        cross_entropy, mse_sq, mse_ws, ratio_c_gauss, ratio_c_linear, ratio_t,
    };
    let be = Backend::cpu(Precision::F64);
    // Two classes at 0 and 1 on a line, two points each.
    let x = [0.0, 0.0, 1.0, 1.0];
    let y = [0, 0, 1, 1];
    assert_eq!(mse_ws(&x, 1, &y, 2), 0.0);
    assert_eq!(mse_sq(&x, 1, &y, 2), 0.0);
    // Same-class distances are 0, different-class ones 1.
    assert_eq!(ratio_t(&be, &x, 1, &y, 2).unwrap(), 0.0);
    // ⟨x_i, x_j⟩: between pairs 0; within pairs (1·1 four times of eight).
    assert_eq!(ratio_c_linear(&x, 1, &y, 2), 0.0);
    // Gaussian: within pairs all 1, between pairs e^{−1/2σ²}.
    let c = ratio_c_gauss(&be, &x, 1, &y, 2, 1.0).unwrap();
    assert!((c - (-0.5f64).exp()).abs() < 1e-15, "{c}");
    let x2 = [0.0, 2.0, 1.0, 3.0];
    // Class means 1 and 2: deviations ±1 → √(1⁴) per row; squared → 1.
    assert_eq!(mse_ws(&x2, 1, &y, 2), 1.0);
    assert_eq!(mse_sq(&x2, 1, &y, 2), 1.0);
    // Same-class distances 2+2+2+2 = 8, different-class 2·(1+3+1+1) = 12.
    assert!((ratio_t(&be, &x2, 1, &y, 2).unwrap() - 8.0 / 12.0).abs() < 1e-15);
    // Within: (0+2)² + (1+3)² = 20 over 8 pairs; between: 6² − 20 = 16 over 8.
    assert!((ratio_c_linear(&x2, 1, &y, 2) - 0.8).abs() < 1e-15);
    // A logistic fit separates far-apart classes; uninformative features give ln 2.
    let far: Vec<f64> = (0..40).map(|i| if i < 20 { -5.0 } else { 5.0 }).collect();
    let ys: Vec<u32> = (0..40).map(|i| (i >= 20) as u32).collect();
    assert!(cross_entropy(&far, 1, &ys, 2) < 0.05);
    let flat = vec![1.0; 40];
    assert!((cross_entropy(&flat, 1, &ys, 2) - 2f64.ln()).abs() < 1e-6);
}

#[test]
fn the_f32_exponential_is_accurate_to_a_few_ulps() {
    use gradfree::kernels::gauss_kernel::exp_neg_f32;
    let mut worst: f64 = 0.0;
    for i in 0..=200_000 {
        let x = i as f32 * (86.9 / 200_000.0);
        let want = (-(x as f64)).exp();
        let got = exp_neg_f32(x) as f64;
        worst = worst.max((got - want).abs() / want);
    }
    assert!(
        worst < 4.0 * f32::EPSILON as f64,
        "worst relative error {worst}"
    );
    assert_eq!(exp_neg_f32(0.0), 1.0);
    assert_eq!(exp_neg_f32(87.5), 0.0);
    assert_eq!(exp_neg_f32(f32::INFINITY), 0.0);
}

#[test]
fn eigenpairs_of_the_zero_matrix_are_orthonormal() {
    // An underflowed kernel makes ISM's Φ exactly zero.
    use gradfree::methods::hsic::eigen::extreme_eigenpairs;
    use nalgebra::DMatrix;
    for largest in [false, true] {
        let (v, l) = extreme_eigenpairs(&DMatrix::zeros(5, 5), 3, largest);
        assert_eq!(l, vec![0.0; 3]);
        assert!(v.iter().all(|x| x.is_finite()));
        let g = v.transpose() * &v;
        assert!((g - DMatrix::<f64>::identity(3, 3)).abs().max() < 1e-15);
    }
}

#[test]
fn transform_gives_the_last_layer_that_predictions_read() {
    use gradfree::methods::hsic::ism::IsmSettings;
    use gradfree::methods::hsic::{SavedModel, Solver, Standardize};
    let mut r = rng(12);
    let (n, d) = (60, 3);
    let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let mut x = uniform(&mut r, n * d, -0.3, 0.3);
    for i in 0..n {
        x[i * d + (y[i] as usize)] += 2.0;
    }
    let data = Labeled {
        dim: d,
        classes: 3,
        x,
        y,
    };
    let be = Backend::cpu(Precision::F64);
    let solvers = [
        Solver::Ism(IsmSettings {
            max_layers: 3,
            test_own_stats: false,
            ..Default::default()
        }),
        Solver::Ws(WsSettings {
            max_layers: 3,
            test_own_stats: false,
            ..WsSettings::for_dataset("")
        }),
    ];
    for solver in &solvers {
        let fitted = hsic::fit(&be, &data, solver, &mut Work::default()).unwrap();
        let how = Standardize::Training;
        let (w, out) = fitted
            .model
            .transform_with(&be, &data.x, how, &mut Work::default())
            .unwrap();
        assert!(w >= 1 && out.len() == n * w, "{}", solver.label());
        if let SavedModel::Ws(m) = &fitted.model {
            // On the training rows (without the fit's jitter) the outputs
            // are close to those the fit stored.
            assert_eq!(m.output.0, w);
        }
        let pred = fitted
            .model
            .predict_with(&be, &data.x, how, &mut Work::default())
            .unwrap();
        assert!(hsic::accuracy(&pred, &data.y) > 0.9, "{}", solver.label());
        // Rows of the wrong width are bad input, not a panic.
        let bad = fitted
            .model
            .transform_with(&be, &data.x[..5], how, &mut Work::default());
        assert!(matches!(bad, Err(gradfree::Error::Input(_))));
    }
}

#[test]
fn solver_settings_that_no_fit_can_use_are_refused() {
    use gradfree::methods::hsic::ism::IsmSettings;
    let bad_ism = [
        IsmSettings {
            max_layers: 0,
            ..Default::default()
        },
        IsmSettings {
            max_iter: 0,
            ..Default::default()
        },
        IsmSettings {
            tol: f64::NAN,
            ..Default::default()
        },
    ];
    for s in &bad_ism {
        assert!(matches!(s.check(), Err(gradfree::Error::Input(_))), "{s:?}");
    }
    assert!(IsmSettings::default().check().is_ok());
    let ok = WsSettings::for_dataset("");
    assert!(ok.check().is_ok());
    for s in [
        WsSettings {
            smallest_sigma: 0.0,
            ..ok.clone()
        },
        WsSettings {
            sigma_steps: 0,
            ..ok.clone()
        },
        WsSettings {
            jitter: -1.0,
            ..ok.clone()
        },
    ] {
        assert!(matches!(s.check(), Err(gradfree::Error::Input(_))), "{s:?}");
    }
}

#[test]
fn lobpcg_finds_the_smallest_eigenpairs_of_a_symmetric_operator() {
    use gradfree::methods::hsic::lobpcg;
    use nalgebra::DMatrix;
    let mut r = rng(21);
    let n = 60;
    // M = Q diag(λ) Qᵀ with a known spectrum: a close pair at the 5th/6th.
    let q = DMatrix::from_vec(n, n, uniform(&mut r, n * n, -1.0, 1.0))
        .qr()
        .q();
    let mut lam: Vec<f64> = (0..n).map(|i| 0.5 + i as f64).collect();
    lam[5] = lam[4] + 1e-3;
    let m = &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(lam.clone())) * q.transpose();
    let mut products = 0;
    let mut apply = |x: &DMatrix<f64>| {
        products += 1;
        Ok(&m * x)
    };
    let start = DMatrix::from_vec(n, 7, uniform(&mut r, n * 7, -1.0, 1.0));
    let found = lobpcg::smallest(&mut apply, &start, 5, 1e-10, 500).unwrap();
    assert!(found.converged);
    assert_eq!(found.products, products);
    for i in 0..5 {
        assert!(
            (found.values[i] - lam[i]).abs() < 1e-8,
            "λ{i}: {} vs {}",
            found.values[i],
            lam[i]
        );
        let v = found.vectors.column(i);
        let res = (&m * v - v * found.values[i]).norm();
        assert!(res < 1e-8 * lam[n - 1], "residual {i}: {res}");
    }
    let gram = found.vectors.transpose() * &found.vectors;
    assert!((gram - DMatrix::identity(7, 7)).abs().max() < 1e-10);
    // Warm-started from the answer, it stops at once.
    let mut apply = |x: &DMatrix<f64>| Ok(&m * x);
    let again = lobpcg::smallest(&mut apply, &found.vectors, 5, 1e-8, 500).unwrap();
    assert!(
        again.converged && again.products == 1,
        "{} products",
        again.products
    );
    // Bad shapes are refused, not a panic.
    let mut apply = |x: &DMatrix<f64>| Ok(&m * x);
    assert!(lobpcg::smallest(&mut apply, &start, 8, 1e-8, 10).is_err());
}

#[test]
fn upper_half_product_rebuilds_the_whole_and_splits_into_parts_exactly() {
    let mut r = rng(31);
    // Rows: one, within a tile, a tile and one more, several tiles (so
    // several runs); 20 features take the dot-product form.
    for &(n, d, cols) in &[(1, 2, 2), (37, 3, 4), (65, 3, 6), (300, 2, 5), (200, 20, 3)] {
        let a = uniform(&mut r, n * d, -1.0, 1.0);
        // M's last column is ones: U·1 comes with U·M.
        let mut m = uniform(&mut r, n * cols, -1.0, 1.0);
        m.chunks_exact_mut(cols).for_each(|row| row[cols - 1] = 1.0);
        let y: Vec<u32> = (0..n).map(|i| (i * 5 % 3) as u32).collect();
        let p = [0.4, 0.35, 0.25];
        for (func, zero, gamma) in [
            (Func::Gauss { sigma: 0.6 }, true, true),
            (Func::Gauss { sigma: 0.9 }, false, false),
            (Func::Dist, false, true),
        ] {
            let spec = Spec {
                func,
                zero_diag: zero,
                gamma: gamma.then_some(Gamma {
                    la: &y,
                    lb: &y,
                    p: &p,
                }),
                squares: false,
                part: (0, 1),
            };
            let what = format!("{func:?} zero={zero} gamma={gamma} {n}x{d} r={cols}");
            // K·M from the whole product; MᵀKM and K·1 from it.
            let km = kernel_product::reference(&a, &a, d, &m, cols, &spec);
            let quad = |um: &[f64]| -> Vec<f64> {
                let mut g = vec![0.0; cols * cols];
                for i in 0..n {
                    for c in 0..cols {
                        for e in 0..cols {
                            g[c * cols + e] += m[i * cols + c] * um[i * cols + e];
                        }
                    }
                }
                g
            };
            let want_quad = quad(&km);
            let want_sums: Vec<f64> = km.chunks_exact(cols).map(|row| row[cols - 1]).collect();
            for (prec, tol) in [(Precision::F64, 1e-11), (Precision::F32, 2e-4)] {
                let be = Backend::cpu(prec);
                let (um, col) = be
                    .kernel_product_upper(&a, d, &m, cols, &spec)
                    .unwrap()
                    .expect("the CPU has the upper-half path");
                // K = U + Uᵀ: K·1 = U·1 + Uᵀ·1 and MᵀKM = MᵀUM + (MᵀUM)ᵀ.
                let sums: Vec<f64> = um
                    .chunks_exact(cols)
                    .zip(&col)
                    .map(|(row, c)| row[cols - 1] + c)
                    .collect();
                let scale = want_sums.iter().fold(1.0f64, |s, v| s.max(v.abs()));
                assert_close(
                    &format!("{prec} K1 {what}"),
                    &sums,
                    &want_sums,
                    tol,
                    tol * scale,
                );
                let g = quad(&um);
                let sym: Vec<f64> = (0..cols * cols)
                    .map(|k| g[k] + g[(k % cols) * cols + k / cols])
                    .collect();
                let scale = want_quad.iter().fold(1.0f64, |s, v| s.max(v.abs()));
                assert_close(
                    &format!("{prec} MᵀKM {what}"),
                    &sym,
                    &want_quad,
                    tol,
                    tol * scale,
                );
            }
            // Parts give the bits of the whole: rows add exactly, the column
            // sums' partials add in order.
            let whole = kernel_product::cpu_upper(&a, d, &m, cols, &spec);
            let parts = 3;
            let (mut rows, mut partials) = (vec![0.0; n * cols], vec![]);
            for part in 0..parts {
                let spec = Spec {
                    part: (part, parts),
                    ..spec
                };
                let got = kernel_product::cpu_upper_part(&a, d, &m, cols, &spec);
                rows.iter_mut().zip(&got.rows).for_each(|(s, v)| *s += v);
                partials.extend(got.col_sums);
            }
            let mut sums = vec![0.0; n];
            kernel_product::add_partials(&partials, n, 1, false, &mut sums);
            assert_eq!((rows, sums), whole, "parts {what}");
        }
    }
    // Bad shapes and two label sets are refused with an error.
    let be = Backend::cpu(Precision::F64);
    let a = uniform(&mut r, 12, -1.0, 1.0);
    assert!(
        be.kernel_product_upper(&a, 5, &[0.0; 4], 1, &Spec::gauss(1.0))
            .is_err()
    );
    assert!(
        be.kernel_product_upper(&a, 3, &[0.0; 3], 1, &Spec::gauss(1.0))
            .is_err()
    );
    let (ya, yb, p) = ([0u32; 4], [0u32; 4], [1.0]);
    let two = Spec {
        gamma: Some(Gamma {
            la: &ya,
            lb: &yb,
            p: &p,
        }),
        ..Spec::gauss(1.0)
    };
    assert!(be.kernel_product_upper(&a, 3, &[0.0; 4], 1, &two).is_err());
}

#[test]
fn phi_times_is_phi_times_a_block_without_forming_phi() {
    use gradfree::methods::hsic::ism::{Augmented, phi_reduced, phi_times};
    use nalgebra::DMatrix;
    let mut r = rng(23);
    // Two tiles, and five (the CPU's upper-half path over several runs),
    // with A's columns off centre (Φ's build must not cancel).
    for (n, rank, lo) in [(70, 9, -1.0), (300, 40, 0.0)] {
        let (q, m, c) = (3, 4, 3);
        let a = DMatrix::from_vec(n, rank, uniform(&mut r, n * rank, lo, lo + 2.0));
        let e = DMatrix::from_vec(rank, q, uniform(&mut r, rank * q, -1.0, 1.0));
        let x = DMatrix::from_vec(rank, m, uniform(&mut r, rank * m, -1.0, 1.0));
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let p = vec![1.0 / c as f64; c];
        for prec in [Precision::F64, Precision::F32] {
            let be = Backend::cpu(prec);
            let ones = Augmented::new(&be, &a, true).unwrap();
            let phi = phi_reduced(&be, &a, &ones, &e, &y, &p, 0.8, &mut Work::default()).unwrap();
            let want = &phi * &x;
            // ZW's rows are formed on the first product that needs them.
            let zw_rows = std::cell::OnceCell::new();
            let got = phi_times(
                &be,
                (&a, &ones, &e),
                &zw_rows,
                &x,
                &y,
                &p,
                0.8,
                &mut Work::default(),
            )
            .unwrap();
            let tol = if prec == Precision::F64 { 1e-10 } else { 1e-4 };
            let scale = want.abs().max();
            assert!(
                (&got - &want).abs().max() <= tol * scale,
                "{prec}: {got} vs {want}"
            );
            assert_eq!(zw_rows.get().map(Vec::len), Some(n * q), "{prec}");
        }
    }
}

/// A layer's [A | 1] and Aᵀ cross to the GPU once, and ZW and Φ are
/// formed there: each build sends only E, the labels and the scalars, and
/// reads back only Φ's r × (r + 1) (against n × (r + 1) when the product
/// comes back), with the values of builds that send ZW and [A | 1] each
/// time within the precision's rounding; a whole fit sends and reads less
/// per ISM iteration than one [A | 1].
#[test]
fn phi_builds_keep_a_layers_operands_on_the_gpu() {
    use gradfree::methods::hsic::ism::{
        Augmented, EigenSolver, IsmSettings, fit_ism, phi_reduced, phi_times,
    };
    use nalgebra::DMatrix;
    let name = "hsic::phi_builds_keep_a_layers_operands_on_the_gpu";
    // Φ formed on the device on lavapipe too.
    if !in_own_process(name, &[("GRADFREE_DEVICE_FORM", "1")]) {
        return;
    }
    let moved = || {
        let w = gradfree::gpu::work_counts();
        (w.bytes_to_device, w.bytes_from_device)
    };
    let mut r = rng(29);
    for prec in [Precision::F32, Precision::F64] {
        let Some(ctx) = gpu(prec) else {
            continue;
        };
        let be = Backend::gpu(ctx, prec);
        let (n, rank, q, c) = (300, 40, 4, 3);
        let a = DMatrix::from_vec(n, rank, uniform(&mut r, n * rank, -1.0, 1.0));
        let e = DMatrix::from_vec(rank, q, uniform(&mut r, rank * q, -1.0, 1.0));
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let p = vec![1.0 / c as f64; c];
        let build = |ones: &Augmented| {
            let (up0, down0) = moved();
            let phi = phi_reduced(&be, &a, ones, &e, &y, &p, 0.8, &mut Work::default()).unwrap();
            let (up1, down1) = moved();
            (phi, up1 - up0, down1 - down0)
        };
        // `true`: as for a backend whose builds take the upper half, so
        // nothing is held and each build sends [A | 1].
        let (want, up_each, down_each) = build(&Augmented::new(&be, &a, true).unwrap());
        let (up0, _) = moved();
        let ones = Augmented::new(&be, &a, false).unwrap();
        let up_hold = moved().0 - up0;
        let bytes = prec.bytes() as u64;
        let m_bytes = (n * (rank + 1)) as u64 * bytes;
        assert!(
            up_hold >= 2 * m_bytes - n as u64 * bytes,
            "{prec}: held {up_hold} bytes"
        );
        assert!(down_each >= m_bytes, "{prec}: {down_each} bytes read");
        let tol = if prec == Precision::F64 { 1e-11 } else { 2e-5 };
        for _ in 0..2 {
            let (got, up, down) = build(&ones);
            let scale = want.abs().max();
            assert!(
                (&got - &want).abs().max() <= tol * scale,
                "{prec}: Φ {got} against {want}"
            );
            assert_eq!(got, got.transpose(), "{prec}: Φ is symmetric");
            eprintln!(
                "{prec}: per build {up} / {down} bytes up / down held, {up_each} / {down_each} not"
            );
            // E with ZW's centring row, the labels, a few scalars and
            // uniforms: never ZW's rows or [A | 1].
            let e_bytes = ((rank + 1) * q) as u64 * bytes;
            assert!(up <= e_bytes + 4 * n as u64 + 1024, "{prec}: {up} bytes up");
            let rows = (n * (q + 1)) as u64 * bytes;
            assert!(up_each >= rows + m_bytes, "{prec}: {up_each} bytes up");
            assert!(
                down <= (rank * (rank + 1)) as u64 * bytes + 1024,
                "{prec}: {down} bytes down"
            );
        }
        // Φ·X for LOBPCG, formed on the device from E and X: r × m back.
        let m = 5;
        let x = DMatrix::from_vec(rank, m, uniform(&mut r, rank * m, -1.0, 1.0));
        let (down0, host) = (moved().1, std::cell::OnceCell::new());
        let got = phi_times(
            &be,
            (&a, &ones, &e),
            &host,
            &x,
            &y,
            &p,
            0.8,
            &mut Work::default(),
        );
        let down = moved().1 - down0;
        let want = &want * &x;
        let got = got.unwrap();
        assert!(
            (&got - &want).abs().max() <= 10.0 * tol * want.abs().max(),
            "{prec}: Φ·X {got} against {want}"
        );
        assert!(host.get().is_none(), "{prec}: ZW formed on the host");
        assert!(
            down <= (rank * (m + 1)) as u64 * bytes + 1024,
            "{prec}: {down} bytes down for Φ·X"
        );
        // A fit: 3 and 9 ISM iterations of one layer (no tolerance stop).
        let data = Labeled {
            dim: 12,
            classes: c,
            x: uniform(&mut r, n * 12, -1.0, 1.0),
            y: y.clone(),
        };
        let fit = |iters: usize, eigen: EigenSolver| {
            let s = IsmSettings {
                tol: 0.0,
                max_iter: iters,
                max_layers: 1,
                cycle_stop: false,
                eigen,
                ..Default::default()
            };
            let (up0, down0) = moved();
            let m = fit_ism(&be, &data, &s, &mut Work::default()).unwrap();
            assert_eq!(m.layers[0].iterations, iters, "{prec}");
            let (up1, down1) = moved();
            (up1 - up0, down1 - down0, m.layers[0].w.shape())
        };
        let one_m = (n * 13) as u64 * bytes;
        // The dense solver, and LOBPCG's products Φ·X.
        for eigen in [EigenSolver::Dense, EigenSolver::Lobpcg] {
            let ((up3, down3, w3), (up9, down9, w9)) = (fit(3, eigen), fit(9, eigen));
            assert_eq!(w3, w9, "{prec} {eigen:?}");
            let (up, down) = ((up9 - up3) / 6, (down9 - down3) / 6);
            eprintln!("{prec} {eigen:?}: {up} / {down} bytes up / down per ISM iteration");
            assert!(
                up < one_m,
                "{prec} {eigen:?}: {up} bytes up per ISM iteration"
            );
            assert!(
                down < one_m,
                "{prec} {eigen:?}: {down} bytes down per ISM iteration"
            );
        }
    }
}

/// The Laplacian form and the row norms on the GPU against their twins,
/// at sizes that leave part of a workgroup idle.
#[test]
fn laplacian_form_and_row_norms_match_their_twins() {
    use gradfree::kernels::{laplacian, row_norms};
    let mut r = rng(31);
    for (rows, cols) in [(1, 1), (7, 3), (130, 41), (0, 5)] {
        let p = uniform(&mut r, rows * (cols + 1), -2.0, 2.0);
        let m = uniform(&mut r, rows * (cols + 1), -1.0, 1.0);
        let want = laplacian::reference(&p, &m, cols);
        let mut cpu = p.clone();
        laplacian::cpu(&mut cpu, &m, cols);
        assert_eq!(cpu, want, "cpu {rows} × {cols}");
        for prec in [Precision::F32, Precision::F64] {
            let Some(ctx) = gpu(prec) else {
                continue;
            };
            let got = laplacian::gpu(&ctx, prec, &p, &m, cols).unwrap();
            let (rtol, atol) = tol(prec);
            assert_close(
                &format!("gpu {prec} {rows} × {cols}"),
                &got,
                &want,
                rtol,
                atol,
            );
            let norms = row_norms::gpu(&ctx, prec, &p, cols + 1).unwrap();
            let want = row_norms::reference(&p, cols + 1);
            assert_close(
                &format!("norms {prec} {rows} × {cols}"),
                &norms,
                &want,
                rtol,
                atol,
            );
        }
        let cpu: Vec<f64> = row_norms::cpu(&p, cols + 1);
        assert_eq!(cpu, row_norms::reference(&p, cols + 1), "cpu norms");
    }
}

#[test]
fn ism_with_lobpcg_matches_the_dense_solver() {
    use gradfree::methods::hsic::ism::{EigenSolver, IsmSettings, fit_ism};
    let mut r = rng(22);
    let (n, d, c) = (150, 6, 3);
    let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
    let mut x = uniform(&mut r, n * d, -1.0, 1.0);
    for i in 0..n {
        x[i * d + y[i] as usize] += 1.2;
    }
    let data = Labeled {
        dim: d,
        classes: c,
        x,
        y,
    };
    let be = Backend::cpu(Precision::F64);
    let fit = |eigen| {
        let s = IsmSettings {
            max_layers: 3,
            eigen,
            seed: 4,
            ..Default::default()
        };
        fit_ism(&be, &data, &s, &mut Work::default()).unwrap()
    };
    let (dense, lob) = (fit(EigenSolver::Dense), fit(EigenSolver::Lobpcg));
    assert_eq!(dense.layers.len(), lob.layers.len());
    for (a, b) in dense.layers.iter().zip(&lob.layers) {
        // The random-feature layers (r = 150) find the same dominant
        // subspace; the loosely solved cluster moves ZW's distances, and
        // the silhouette, by well under 1%.
        assert!(
            (a.silhouette - b.silhouette).abs() < 0.01,
            "{} vs {}",
            a.silhouette,
            b.silhouette
        );
        assert_eq!(a.w.shape(), b.w.shape());
    }
    // The next layer's random features see each eigenvector's sign and the
    // loosely solved cluster: two draws of the same W*, equally good.
    assert!(dense.train_acc > 0.8 && lob.train_acc > 0.8);
    assert!((dense.train_acc - lob.train_acc).abs() < 0.05);
    // The same solves on the GPU's kernel products.
    if let Some(ctx) = gpu(Precision::F32) {
        let s = IsmSettings {
            max_layers: 3,
            eigen: EigenSolver::Lobpcg,
            seed: 4,
            ..Default::default()
        };
        let on_gpu = fit_ism(
            &Backend::gpu(ctx, Precision::F32),
            &data,
            &s,
            &mut Work::default(),
        )
        .unwrap();
        assert!(on_gpu.train_acc > 0.8, "gpu f32: {}", on_gpu.train_acc);
    }
    // Saved and loaded, the setting travels with the model.
    let bytes = lob.to_bytes(&[0, 1, 2]).unwrap();
    let (back, _) = gradfree::methods::hsic::ism::IsmModel::from_bytes(&bytes, "test").unwrap();
    assert_eq!(back.settings.eigen, EigenSolver::Lobpcg);
}

/// Products long enough that one invocation's loops would pass llvmpipe's
/// 65,535 iterations (⌈1600 / 16⌉ steps of about 700 features each): on
/// lavapipe they are split over dispatches, where llvmpipe used to end the
/// loops silently and the products came out wrong by a fifth or more.
#[test]
fn kernel_products_hold_past_llvmpipes_loop_limit() {
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let mut r = rng(23);
    let (n, d) = (1600, 700);
    let a = uniform(&mut r, n * d, 0.0, 0.05);
    for (func, cols) in [(Func::Dist, 3), (Func::Gauss { sigma: 0.5 }, 20)] {
        let m = uniform(&mut r, n * cols, 0.0, 1.0);
        let spec = Spec {
            func,
            ..Spec::dist()
        };
        let want = kernel_product::reference(&a, &a, d, &m, cols, &spec);
        let got = gradfree::kernels::kernel_product::gpu(
            &ctx,
            Precision::F32,
            &a,
            &a,
            d,
            &m,
            cols,
            &spec,
        )
        .unwrap();
        assert_close(&format!("{func:?} × {cols}"), &got, &want, 1e-4, 1e-6);
    }
}
