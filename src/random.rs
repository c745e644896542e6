//! Seeded random draws shared by the methods (every random choice of a run
//! follows from its `--seed`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn box_muller(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A standard normal draw (Box–Muller, u₁ ∈ (0, 1] as 1 − u).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    box_muller(u1, rng.random())
}

/// A standard normal draw with u₁ clamped away from 0 instead of reflected:
/// the SGD baseline's initialization, kept so its runs stay bit for bit.
pub fn normal_clamped(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    box_muller(u1, rng.random())
}
