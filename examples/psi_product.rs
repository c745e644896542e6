//! Times one Ψ product of the W* solver on the CPU backend: the Γ-weighted
//! Gaussian kernel of n random rows (q features, zero diagonal) times an
//! n × w block, the best of `reps` runs.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release --example psi_product -- 6000 47 50 3
//! ```

use gradfree::kernels::kernel_product::{Func, Gamma, Spec, cpu};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("n q w reps"))
        .collect();
    let [n, q, w, reps] = args[..] else {
        eprintln!("usage: psi_product N Q W REPS");
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
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        cpu(&a, &a, q, &m, w, &spec, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
    println!("n {n}, q {q}, w {w}: best of {reps} {best:.4} s (checksum {sum:.6e})");
}
