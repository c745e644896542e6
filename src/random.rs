//! Seeded random draws shared by the methods (every random choice of a run
//! follows from its `--seed`).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shuffled item order of an epoch (depends only on the seed and the epoch,
/// so a run resumed after an epoch retraces the uninterrupted one; epoch 0
/// is the held-out split's order).
pub fn epoch_order(items: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items).collect();
    let mix = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix));
    order
}

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
