//! `shaders/project_bilinear.wgsl` against its f64 twin; properties of the
//! projection (proptest); the reference C code's golden vectors.

use crate::support::gpu;
use crate::support::*;
use gradfree::kernels::project_bilinear::*;
use gradfree::{Backend, Precision};
use proptest::prelude::*;

/// Random problems of lengths 1..=6 with targets near the current product
/// (moderate multipliers: the f32 path is compared in a well-conditioned regime).
fn batch(n: usize, seed: u64) -> BilinearBatch {
    let mut r = rng(seed);
    let mut b = BilinearBatch {
        ptr: vec![0],
        ..Default::default()
    };
    for p in 0..n {
        let len = 1 + p % 6;
        let x = uniform(&mut r, len, -1.0, 1.0);
        let w = uniform(&mut r, len, -1.0, 1.0);
        let dot: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
        let noise = uniform(&mut r, 2, -0.3, 0.3);
        let nmf = p % 3 == 0;
        let omega = if nmf { 1.0 } else { 0.5 + noise[0].abs() * 3.0 };
        b.x.extend(x);
        b.w.extend(w);
        b.y.push(dot / omega + noise[1]);
        b.omega.push(omega);
        b.g.push(if nmf { 0.0 } else { 1.0 + (p % 4) as f64 });
        b.ptr.push(b.x.len() as u32);
    }
    b
}

fn compare(got: &BilinearOut, want: &BilinearOut, p: Precision, what: &str) {
    let (rt, at) = tol(p);
    assert_eq!(got.status.len(), want.status.len());
    let bad: Vec<usize> = (0..got.status.len())
        .filter(|&i| got.status[i] != want.status[i])
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} status mismatches, first at {i}: got {} want {} (y {:e} ptr {}..{}) u={:e}",
            bad.len(),
            got.status[i],
            want.status[i],
            want.y[i],
            i,
            i + 1,
            want.u[i]
        );
    }
    assert_close(&format!("{what} x"), &got.x, &want.x, rt, at);
    assert_close(&format!("{what} w"), &got.w, &want.w, rt, at);
    assert_close(&format!("{what} y"), &got.y, &want.y, rt, at);
    assert_close(&format!("{what} u"), &got.u, &want.u, rt, at);
}

#[test]
fn project_bilinear_matches_reference() {
    for p in [Precision::F32, Precision::F64] {
        let cpu = Backend::cpu(p);
        let gpu = gpu(p).map(|c| Backend::gpu(c, p));
        for &n in SIZES {
            let b = batch(n, n as u64);
            let want = project_batch_reference::<f64>(&b);
            compare(
                &cpu.project_bilinear(&b).unwrap(),
                &want,
                p,
                &format!("cpu {p} n={n}"),
            );
            if let Some(g) = &gpu {
                compare(
                    &g.project_bilinear(&b).unwrap(),
                    &want,
                    p,
                    &format!("gpu {p} n={n}"),
                );
            }
        }
    }
}

#[test]
fn project_bilinear_beyond_65535_workgroups() {
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let mut b = batch(0, 1);
    let mut r = rng(7);
    for _ in 0..BIG {
        let v = uniform(&mut r, 3, -1.0, 1.0);
        b.x.push(v[0]);
        b.w.push(v[1]);
        b.y.push(v[0] * v[1] + 0.1 * v[2]);
        b.omega.push(1.0);
        b.g.push(0.0);
        b.ptr.push(b.x.len() as u32);
    }
    let got = Backend::gpu(ctx, Precision::F32)
        .project_bilinear(&b)
        .unwrap();
    let want = project_batch_reference::<f64>(&b);
    compare(&got, &want, Precision::F32, "gpu big");
}

/// A projection problem: x, w, y, Ω, g (None = NMF form).
fn problem() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, f64, f64, Option<f64>)> {
    (1usize..8).prop_flat_map(|n| {
        (
            prop::collection::vec(-10.0f64..10.0, n),
            prop::collection::vec(-10.0f64..10.0, n),
            -50.0f64..50.0,
            0.1f64..5.0,
            prop::option::of(0.5f64..100.0),
        )
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn dist2(x: &[f64], w: &[f64], y: f64, p: &Projected<f64>, g: Option<f64>) -> f64 {
    let d: f64 = x
        .iter()
        .zip(&p.x)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        + w.iter()
            .zip(&p.w)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
    d + g.map_or(0.0, |g| g * (y - p.y).powi(2))
}

/// Every stationary point of the distance on the constraint set, found by
/// scanning h(u) on (−∞, −1), (−1, 1), (1, ∞) for sign changes and bisecting.
fn stationary_points(
    x: &[f64],
    w: &[f64],
    y: f64,
    omega: f64,
    g: Option<f64>,
) -> Vec<Projected<f64>> {
    let (c, t) = match g {
        Some(g) => (omega * omega / g, omega * y),
        None => (0.0, y),
    };
    let a = x.iter().zip(w).map(|(a, b)| (a + b).powi(2)).sum::<f64>() / 4.0;
    let b = x.iter().zip(w).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 4.0;
    let h = |u: f64| a / (1.0 - u).powi(2) - b / (1.0 + u).powi(2) + c * u - t;
    let mut grid: Vec<f64> = (-4000..=4000).map(|i| (i as f64 / 200.0).tanh()).collect();
    for i in -600..=300 {
        let e = (i as f64 / 20.0).exp();
        grid.push(1.0 + e);
        grid.push(-1.0 - e);
    }
    grid.retain(|u| u.abs() != 1.0 && u.is_finite());
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let mut out = vec![];
    for pair in grid.windows(2) {
        let (mut lo, mut hi) = (pair[0], pair[1]);
        // Do not bisect across a pole.
        if (lo < -1.0) != (hi < -1.0) || (lo < 1.0) != (hi < 1.0) {
            continue;
        }
        let (hl, hh) = (h(lo), h(hi));
        if hl == 0.0 || hl.signum() == hh.signum() {
            continue;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if (h(mid) > 0.0) == (hl > 0.0) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let u = 0.5 * (lo + hi);
        let den = 1.0 - u * u;
        out.push(Projected {
            x: x.iter().zip(w).map(|(a, b)| (a + u * b) / den).collect(),
            w: x.iter().zip(w).map(|(a, b)| (b + u * a) / den).collect(),
            y: g.map_or(y, |g| y - omega * u / g),
            u,
            status: STATUS_OK,
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn batched_and_warm_started_roots_match_the_single_solver(
        sums in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0, 0.0f64..2.0, -5.0f64..5.0), 0..=ROOT_BLOCK),
        nudge in -1e-3f64..1e-3,
    ) {
        let mut cold = vec![Root::<f64>::IDENTITY; sums.len()];
        let mut warm = vec![WarmRoot::NONE; sums.len()];
        solve_roots(&sums, Some(&mut warm), &mut cold);
        for (k, &(sp, sm, c, t)) in sums.iter().enumerate() {
            // Without warm starts the batch is bit-identical to one-at-a-time.
            prop_assert_eq!(cold[k], solve_root(sp, sm, c, t));
        }
        // The next RRR iteration sees nearby sums: warm starts reach the same root.
        let moved: Vec<_> = sums.iter().map(|&(sp, sm, c, t)| (sp * (1.0 + nudge), sm, c, t + nudge)).collect();
        let mut again = vec![Root::<f64>::IDENTITY; sums.len()];
        solve_roots(&moved, Some(&mut warm), &mut again);
        for (k, &(sp, sm, c, t)) in moved.iter().enumerate() {
            let want = solve_root(sp, sm, c, t);
            prop_assert_eq!(again[k].status, want.status);
            prop_assert_eq!(again[k].positive, want.positive);
            prop_assert!((again[k].ua - want.ua).abs() <= 1e-13 * (want.ua + 1e-300) + 1e-300
                || (again[k].s - want.s).abs() <= 1e-13 * want.s,
                "k {k}: warm {:?} cold {:?}", again[k], want);
        }
    }

    #[test]
    fn projection_lands_on_the_set_and_is_idempotent((x, w, y, omega, g) in problem()) {
        let p = project(&x, &w, y, omega, g);
        prop_assume!(p.status != STATUS_DEGENERATE);
        prop_assert_eq!(p.status, STATUS_OK);
        let om = if g.is_some() { omega } else { 1.0 };
        let scale = dot(&p.x, &p.x).sqrt() * dot(&p.w, &p.w).sqrt() + (om * p.y).abs() + 1.0;
        prop_assert!((dot(&p.x, &p.w) - om * p.y).abs() <= 1e-10 * scale,
            "residual {} scale {}", dot(&p.x, &p.w) - om * p.y, scale);
        let q = project(&p.x, &p.w, p.y, omega, g);
        prop_assert!(q.u.abs() <= 1e-9, "second projection moved: u = {}", q.u);
        for (a, b) in q.x.iter().chain(&q.w).zip(p.x.iter().chain(&p.w)) {
            prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
        }
    }

    #[test]
    fn projection_is_the_nearest_stationary_point((x, w, y, omega, g) in problem()) {
        let p = project(&x, &w, y, omega, g);
        prop_assume!(p.status == STATUS_OK);
        let ours = dist2(&x, &w, y, &p, g);
        let om = if g.is_some() { omega } else { 1.0 };
        let others = stationary_points(&x, &w, y, om, g);
        prop_assert!(!others.is_empty());
        for o in &others {
            let d = dist2(&x, &w, y, o, g);
            prop_assert!(ours <= d * (1.0 + 1e-9) + 1e-12,
                "u = {} gives {} but stationary u = {} gives {}", p.u, ours, o.u, d);
        }
    }

    #[test]
    fn projection_stays_finite_near_the_ends_and_for_tiny_vectors(
        (x, w, _, omega, g) in problem(),
        scale_exp in -15i32..=0,
        target in prop::sample::select(vec![-1e12, -1e6, -1.0, 0.0, 1.0, 1e6, 1e12]),
    ) {
        let s = 10f64.powi(scale_exp);
        let xs: Vec<f64> = x.iter().map(|v| v * s).collect();
        let ws: Vec<f64> = w.iter().map(|v| v * s).collect();
        let y = target * s * s;
        for f32_path in [false, true] {
            let (xo, wo, yo, st) = if f32_path {
                let xf: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
                let wf: Vec<f32> = ws.iter().map(|&v| v as f32).collect();
                let p = project(&xf, &wf, y as f32, omega as f32, g.map(|g| g as f32));
                (p.x.iter().map(|&v| v as f64).collect::<Vec<_>>(), p.w.iter().map(|&v| v as f64).collect::<Vec<_>>(), p.y as f64, p.status)
            } else {
                let p = project(&xs, &ws, y, omega, g);
                (p.x, p.w, p.y, p.status)
            };
            prop_assert!(st != STATUS_NOT_CONVERGED, "did not converge (f32 = {})", f32_path);
            prop_assert!(xo.iter().chain(&wo).all(|v| v.is_finite()) && yo.is_finite(),
                "non-finite output (f32 = {})", f32_path);
        }
    }
}
