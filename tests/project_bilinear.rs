//! `shaders/project_bilinear.wgsl` against its f64 twin; properties of the
//! projection (proptest); the reference C code's golden vectors.

mod common;

use common::*;
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
    let bad: Vec<usize> = (0..got.status.len()).filter(|&i| got.status[i] != want.status[i]).collect();
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
            compare(&cpu.project_bilinear(&b).unwrap(), &want, p, &format!("cpu {p} n={n}"));
            if let Some(g) = &gpu {
                compare(&g.project_bilinear(&b).unwrap(), &want, p, &format!("gpu {p} n={n}"));
            }
        }
    }
}

#[test]
fn project_bilinear_beyond_65535_workgroups() {
    let Some(ctx) = gpu(Precision::F32) else { return };
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
    let got = Backend::gpu(ctx, Precision::F32).project_bilinear(&b).unwrap();
    let want = project_batch_reference::<f64>(&b);
    compare(&got, &want, Precision::F32, "gpu big");
}
