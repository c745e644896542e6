//! Times one Ψ product of the W* solver: the Γ-weighted Gaussian kernel of
//! n random rows (q features, zero diagonal) times an n × w block, the best
//! of `reps` runs, on the CPU backend or (with a fifth argument `gpu`) the
//! first GPU adapter, software ones included, in f32.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release --example psi_product -- 6000 47 50 3
//! cargo run --release --example psi_product -- 2000 20 401 3 gpu
//! ```

use gradfree::gpu::{GpuContext, GpuRequest};
use gradfree::kernels::kernel_product::{Func, Gamma, Spec, cpu, gpu};
use gradfree::real::Precision;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let on_gpu = args.len() == 5 && args.pop().is_some_and(|d| d == "gpu");
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("n q w reps"))
        .collect();
    let [n, q, w, reps] = args[..] else {
        eprintln!("usage: psi_product N Q W REPS [gpu]");
        std::process::exit(2);
    };
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let a: Vec<f32> = (0..n * q).map(|_| r.random_range(0.8..1.2)).collect();
    let m: Vec<f32> = (0..n * w).map(|_| r.random_range(-0.5..0.5)).collect();
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let p = vec![0.1; 10];
    let spec = Spec {
        func: Func::Gauss { sigma: 0.7 },
        zero_diag: true,
        gamma: Some(Gamma {
            la: &y,
            lb: &y,
            p: &p,
        }),
        squares: false,
        part: (0, 1),
    };
    let mut out = vec![0f32; n * spec.width(w)];
    let mut best = f64::MAX;
    let ctx = on_gpu.then(|| {
        let req = GpuRequest {
            allow_software: true,
            ..Default::default()
        };
        GpuContext::open(&req, Precision::F32).expect("a GPU adapter")
    });
    let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (a64, m64) = (wide(&a), wide(&m));
    let mut sum = 0.0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        match &ctx {
            Some(ctx) => {
                let o = gpu(ctx, Precision::F32, &a64, &a64, q, &m64, w, &spec).expect("gpu");
                sum = o.iter().sum();
            }
            None => {
                cpu(&a, &a, q, &m, w, &spec, &mut out);
                sum = out.iter().map(|&v| f64::from(v)).sum();
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    // The pairs' distances (q each) and the product (w each).
    let madds = (n * n * (q + w)) as f64;
    println!(
        "n {n}, q {q}, w {w}: best of {reps} {best:.4} s, {:.2} G multiply-adds/s (checksum {sum:.6e})",
        madds / best / 1e9
    );
}
