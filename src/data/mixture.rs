//! Gaussian mixtures: `classes` centres drawn N(0, spread²) in `dim`
//! dimensions, each item a uniformly drawn class's centre plus unit
//! Gaussian noise — labeled data of any size, for the HSIC scale runs.

use super::labeled::Labeled;
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Generates `items` items (seeded).
pub fn gaussian_mixture(
    items: usize,
    dim: usize,
    classes: usize,
    spread: f64,
    seed: u64,
) -> Result<Labeled> {
    if items == 0 || dim == 0 || classes < 2 || !(spread.is_finite() && spread >= 0.0) {
        return Err(Error::Input(format!(
            "a Gaussian mixture needs items, features ≥ 1, classes ≥ 2 and a finite spread ≥ 0; got {items}, {dim}, {classes}, {spread}"
        )));
    }
    let len = items
        .checked_mul(dim)
        .filter(|&l| l <= crate::data::FALLBACK_MAX_BYTES as usize / 8)
        .ok_or_else(|| Error::Input(format!("{items} items × {dim} features is too large")))?;
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f64> = (0..classes * dim)
        .map(|_| spread * crate::random::normal(&mut r))
        .collect();
    let mut x = Vec::with_capacity(len);
    let mut y = Vec::with_capacity(items);
    for _ in 0..items {
        let c = r.random_range(0..classes);
        x.extend((0..dim).map(|j| centres[c * dim + j] + crate::random::normal(&mut r)));
        y.push(c as u32);
    }
    Ok(Labeled { dim, classes, x, y })
}
