//! Interleaved spirals: `classes` arms of `per_class` points each in the
//! plane, radius growing along the arm, with Gaussian noise — the classic
//! test that a kernel network separates classes no line can.

use super::labeled::Labeled;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Generates the spirals (seeded).
pub fn spiral(per_class: usize, classes: usize, noise: f64, seed: u64) -> Labeled {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(per_class * classes * 2);
    let mut y = Vec::with_capacity(per_class * classes);
    for c in 0..classes {
        for i in 0..per_class {
            let t = i as f64 / per_class as f64;
            let angle = 4.0 * t + std::f64::consts::TAU * c as f64 / classes as f64;
            let radius = 0.2 + t;
            let (nx, ny): (f64, f64) = (r.random_range(-1.0..1.0), r.random_range(-1.0..1.0));
            x.push(radius * angle.cos() + noise * nx);
            x.push(radius * angle.sin() + noise * ny);
            y.push(c as u32);
        }
    }
    Labeled {
        dim: 2,
        classes,
        x,
        y,
    }
}
