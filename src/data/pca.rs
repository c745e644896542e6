//! The linear baseline beside the nonlinear decoders (StarNet, the RRR
//! autoencoder): how well the best rank-k affine model (PCA) reconstructs
//! the data.

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The linear baseline with the same latent size: rms error of the best
/// rank-k affine model (PCA, from the eigenvectors of the covariance of up
/// to `sample` random rows) on up to `eval` rows of X (n × d).
pub fn pca_rms(x: &[f64], d: usize, k: usize, sample: usize, eval: usize, seed: u64) -> f64 {
    let n = x.len() / d;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx = rand::seq::index::sample(&mut rng, n, sample.min(n)).into_vec();
    let s = DMatrix::from_row_slice(
        idx.len(),
        d,
        &idx.iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect::<Vec<f64>>(),
    );
    let mean: Vec<f64> = (0..d).map(|j| s.column(j).mean()).collect();
    let centred = DMatrix::from_fn(s.nrows(), d, |i, j| s[(i, j)] - mean[j]);
    let eig = nalgebra::SymmetricEigen::new(centred.transpose() * &centred);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let k = k.min(d);
    let v = DMatrix::from_fn(d, k, |r, c| eig.eigenvectors[(r, order[c])]);
    let m = eval.min(n);
    let e = DMatrix::from_fn(m, d, |i, j| x[i * d + j] - mean[j]);
    let resid = &e - (&e * &v) * v.transpose();
    (resid.norm_squared() / (m * d) as f64).sqrt()
}
