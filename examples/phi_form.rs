//! Times one Φ build of the W* solver (`ism::phi_reduced`): Ψ of n random
//! rows of ZW = A·E (q features) times [A | 1] (r + 1 columns), its
//! Laplacian form and Aᵀ times it, the best of `reps` builds after
//! [A | 1] (and on a hardware GPU Aᵀ) are held for the layer; on the CPU
//! backend, or (with a fifth argument `gpu`) the first GPU adapter,
//! software ones included, in f32. `GRADFREE_DEVICE_FORM=0` makes a GPU
//! read the product back and form Φ on the host, `1` forms it on the
//! device even on a software adapter. Prints the bytes each build moved.
//!
//! ```sh
//! cargo run --release --example phi_form -- 10000 47 400 3 gpu
//! GRADFREE_DEVICE_FORM=0 cargo run --release --example phi_form -- 10000 47 400 3 gpu
//! ```

use gradfree::engine::Backend;
use gradfree::gpu::{GpuContext, GpuRequest, work_counts};
use gradfree::methods::hsic::Work;
use gradfree::methods::hsic::ism::{Augmented, phi_reduced};
use gradfree::real::Precision;
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let on_gpu = args.len() == 5 && args.pop().is_some_and(|d| d == "gpu");
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("n q r reps"))
        .collect();
    let [n, q, r, reps] = args[..] else {
        eprintln!("usage: phi_form N Q R REPS [gpu]");
        std::process::exit(2);
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let a = DMatrix::from_fn(n, r, |_, _| rng.random_range(-1.0..1.0));
    let e = DMatrix::from_fn(r, q, |_, _| rng.random_range(-1.0..1.0) / (r as f64).sqrt());
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let p = vec![0.1; 10];
    let be = if on_gpu {
        let req = GpuRequest {
            allow_software: true,
            ..Default::default()
        };
        let ctx = GpuContext::open(&req, Precision::F32).expect("a GPU adapter");
        Backend::gpu(ctx, Precision::F32)
    } else {
        Backend::cpu(Precision::F32)
    };
    let upper = be.has_upper_half().expect("one process");
    let ones = Augmented::new(&be, &a, upper).expect("[A | 1] held");
    let mut best = f64::MAX;
    let mut sum = 0.0;
    let mut moved = (0, 0);
    for _ in 0..reps.max(1) {
        let before = work_counts();
        let t = Instant::now();
        let phi = phi_reduced(&be, &a, &ones, &e, &y, &p, 1.0, &mut Work::default()).expect("Φ");
        best = best.min(t.elapsed().as_secs_f64());
        let after = work_counts();
        moved = (
            after.bytes_to_device - before.bytes_to_device,
            after.bytes_from_device - before.bytes_from_device,
        );
        sum = phi.sum();
    }
    let madds = (n * n * (q + r + 1) + n * r * r) as f64;
    println!(
        "n {n}, q {q}, r {r}: best of {reps} {best:.4} s, {:.2} G multiply-adds/s, {} / {} bytes to / from the device per build (checksum {sum:.6e})",
        madds / best / 1e9,
        moved.0,
        moved.1
    );
}
