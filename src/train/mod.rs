//! The training loop every iterative method runs on, and what a run reports.

pub mod meter;
pub mod report;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Shuffled item order of an epoch (depends only on the seed and the epoch,
/// so a run resumed after an epoch retraces the uninterrupted one).
pub fn epoch_order(items: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items).collect();
    let mix = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix));
    order
}
