//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use gradfree::Precision;
use gradfree::gpu::{GpuContext, GpuRequest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sizes every kernel is tested at: empty, one, odd, not a multiple of the
/// workgroup, and (separately, f32 only) more than 65535 workgroups.
pub const SIZES: &[usize] = &[0, 1, 37, 1003];

/// Invocations that need a 2-D grid (65535 workgroups of 64, plus some).
pub const BIG: usize = 65_535 * 64 + 101;

/// The GPU context for a precision (lavapipe in CI). With
/// GRADFREE_SKIP_GPU_TESTS=1 GPU tests are skipped (they print why);
/// otherwise a missing adapter fails the test.
pub fn gpu(precision: Precision) -> Option<Arc<GpuContext>> {
    static F32: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    static F64: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    let cell = match precision {
        Precision::F32 => &F32,
        Precision::F64 => &F64,
    };
    cell.get_or_init(|| {
        if std::env::var("GRADFREE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("GPU tests skipped (GRADFREE_SKIP_GPU_TESTS=1)");
            return None;
        }
        let req = GpuRequest {
            allow_software: true,
            ..Default::default()
        };
        match GpuContext::open(&req, precision) {
            Ok(c) => Some(c),
            Err(gradfree::Error::NoF64 { adapter }) => {
                eprintln!("adapter {adapter} has no f64: f64 GPU tests skipped");
                None
            }
            Err(e) => panic!(
                "no GPU adapter for the GPU tests: {e} (set GRADFREE_SKIP_GPU_TESTS=1 to skip)"
            ),
        }
    })
    .clone()
}

/// Seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [lo, hi).
pub fn uniform(r: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// Tolerance |got − want| ≤ rtol·max(|got|, |want|) + atol, per element;
/// a failure names the index and both values.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * g.abs().max(w.abs()) + atol;
        let d = (g - w).abs();
        assert!(
            d <= tol || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e}, want {w:e} (|diff| {d:e} > tol {tol:e})"
        );
        if d > worst.0 {
            worst = (d, i);
        }
    }
}

/// Per precision: (rtol, atol) for a GPU result against the f64 twin on
/// well-conditioned inputs of magnitude ~1.
pub fn tol(p: Precision) -> (f64, f64) {
    match p {
        Precision::F32 => (2e-4, 2e-5),
        Precision::F64 => (1e-11, 1e-12),
    }
}

/// A random RRR state for a classifier problem: x, w, y uniform in [−1, 1),
/// small biases, data in [0, 1), labels among 2 classes.
pub fn random_classifier_state(
    p: &gradfree::rrr::RrrProblem,
    items: usize,
    seed: u64,
) -> gradfree::rrr::RrrState {
    let mut r = rng(seed);
    let mut s = gradfree::rrr::RrrState::zeros(p, items);
    s.x = uniform(&mut r, p.edges() * items, -1.0, 1.0);
    s.w = uniform(&mut r, p.edges() * items, -1.0, 1.0);
    s.y = uniform(&mut r, p.nodes * items, -1.0, 1.0);
    s.b = uniform(&mut r, p.nodes * items, -0.2, 0.2);
    s.data = uniform(&mut r, p.nodes * items, 0.0, 1.0);
    s.labels = (0..items).map(|_| r.random_range(0..2)).collect();
    s
}

/// Runs the gradfree binary.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gradfree"))
        .args(args)
        .output()
        .expect("spawn gradfree")
}

/// stdout and stderr of a run, together.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gradfree-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
