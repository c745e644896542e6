//! Letter montages for NMF (the paper's set is not public; this is an
//! equivalent one). Each 40×40 image is a 2×2 montage of 20×20 cells; every
//! cell shows one of the letters w, x, y, z chosen at random. The top cells
//! use a plain font and the bottom cells a slanted (sheared, thinner) font,
//! so each image is a sum of 4 of 16 fixed parts (letter × cell) with
//! disjoint supports: an exact rank-16 non-negative factorization exists,
//! with binary codes (the linear rank is 13: each cell's four codes sum to
//! one). Strokes are rasterized here with anti-aliasing by
//! distance to each segment. Deterministic from the seed.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Image side in pixels.
pub const SIDE: usize = 40;
/// Cell side in pixels.
pub const CELL: usize = 20;
/// The letters.
pub const LETTERS: [char; 4] = ['w', 'x', 'y', 'z'];

/// Polylines of a letter in the unit box (x right, y down).
fn strokes(letter: char) -> Vec<Vec<(f64, f64)>> {
    match letter {
        'w' => vec![vec![
            (0.0, 0.0),
            (0.25, 1.0),
            (0.5, 0.35),
            (0.75, 1.0),
            (1.0, 0.0),
        ]],
        'x' => vec![vec![(0.0, 0.0), (1.0, 1.0)], vec![(1.0, 0.0), (0.0, 1.0)]],
        'y' => vec![vec![(0.0, 0.0), (0.5, 0.55)], vec![(1.0, 0.0), (0.15, 1.0)]],
        'z' => vec![vec![(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]],
        _ => vec![],
    }
}

fn seg_dist(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

/// The 20×20 glyph of a letter in a font (false = plain, true = slanted), row-major in [0, 1].
pub fn glyph(letter: char, slanted: bool) -> Vec<f64> {
    let (margin, box_) = (3.0, (CELL as f64) - 6.0);
    let (width, shear) = if slanted { (1.3, 0.3) } else { (1.9, 0.0) };
    let lines: Vec<Vec<(f64, f64)>> = strokes(letter)
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|(x, y)| {
                    let xs = x * (1.0 - shear) + shear * (1.0 - y);
                    (margin + xs * box_, margin + y * box_)
                })
                .collect()
        })
        .collect();
    let mut img = vec![0.0; CELL * CELL];
    for r in 0..CELL {
        for c in 0..CELL {
            let p = (c as f64 + 0.5, r as f64 + 0.5);
            let d = lines
                .iter()
                .flat_map(|l| l.windows(2).map(move |s| seg_dist(p, s[0], s[1])))
                .fold(f64::INFINITY, f64::min);
            img[r * CELL + c] = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
        }
    }
    img
}

/// The 16 parts (letter × cell) as 1600-pixel images: part `4·cell + letter`.
pub fn parts() -> Vec<Vec<f64>> {
    let mut out = vec![];
    for cell in 0..4 {
        let (cr, cc) = (cell / 2, cell % 2);
        for &l in &LETTERS {
            let g = glyph(l, cr == 1);
            let mut img = vec![0.0; SIDE * SIDE];
            for r in 0..CELL {
                for c in 0..CELL {
                    img[(cr * CELL + r) * SIDE + cc * CELL + c] = g[r * CELL + c];
                }
            }
            out.push(img);
        }
    }
    out
}

/// `count` montages (rows of 1600 pixels) and their true codes (count × 16, binary).
pub fn generate(count: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
    let parts = parts();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = DMatrix::zeros(count, SIDE * SIDE);
    let mut codes = DMatrix::zeros(count, parts.len());
    for k in 0..count {
        for cell in 0..4 {
            let part = 4 * cell + rng.random_range(0..4);
            codes[(k, part)] = 1.0;
            for (p, &v) in parts[part].iter().enumerate() {
                data[(k, p)] += v;
            }
        }
    }
    (data, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montages_are_sums_of_sixteen_parts() {
        let (d, c) = generate(120, 7);
        assert_eq!(d.shape(), (120, 1600));
        assert!(d.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let parts = DMatrix::from_fn(16, 1600, |i, j| parts()[i][j]);
        assert!((&c * &parts - &d).amax() < 1e-12);
        // Linear rank 13 = 16 − 3: every cell holds exactly one letter, so
        // the four cells' codes each sum to 1 (the non-negative rank is 16).
        let sv = d.clone().svd(false, false).singular_values;
        let big = sv.iter().filter(|&&s| s > 1e-8 * sv[0]).count();
        assert_eq!(big, 13);
        assert_eq!(generate(120, 7).0, d, "deterministic from the seed");
    }
}
