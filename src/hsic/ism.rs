//! The ISM solver W* (Wu et al.; reference `kernelNet`/`ISMLP`, see
//! HSIC_REFERENCE.md §2b). Per layer, on input Z (n × d):
//!
//! ```text
//! σ       = argmax_σ Σ Γ_ij k_σ(z_i, z_j)            (as for W_s)
//! q       = #{cumsum(s)/Σs < 1/2} + 1 clamped to [2C, d], s = singular values of Z
//! W₀      = eigenvectors of the q smallest eigenvalues of Φ₀ = −ZᵀΓZ
//! repeat  K = k_σ(ZW) with zero diagonal, Ψ = Γ ∘ K,
//!         Φ = Zᵀ(Diag(1ᵀΨ) − Ψ)Z,  (W, λ) = q smallest eigenpairs of Φ
//! until   ‖λ_old − λ‖/‖λ_old‖ < 0.01 (at most 200 times)
//! output  ψ(ZW) = √(2/F) cos(ZWΩ + b), Ω ~ N(0, 1/σ²)^{q×F}, b ~ U[0, 2π)^F, F = 400
//! ```
//!
//! Layers stop when the silhouette s of ZW (Euclidean) passes 0.95, or
//! passes 0.8 and moved less than 0.001 (the stopping layer is kept). The
//! final layer projects the last output Φ on the top-C eigenvectors of
//! ΦᵀΓΦ; prediction is the nearest class mean of the training outputs.
//! Γ = H Y Yᵀ H is used through its closed form (never stored as more
//! than the Ψ products need). The kernel matrices come from the backend;
//! the d × d eigen-solves run on the host in f64 (nalgebra).

use nalgebra::DMatrix;

use super::eigen::extreme_eigenpairs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Work, normal, opt_sigma};
use crate::Backend;
use crate::data::labeled::Labeled;
use crate::data::matrix::row_major as rows_of;
use crate::error::Result;
use crate::kernels::kernel_product::{Func, Gamma, Spec};

/// Random Fourier features per layer output (the reference's 400).
pub const FEATURES: usize = 400;

/// ISM settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IsmSettings {
    /// Layer cap.
    pub max_layers: usize,
    /// Silhouette exit threshold.
    pub exit_silhouette: f64,
    /// Relative eigenvalue change that ends the ISM iteration.
    pub tol: f64,
    /// ISM iteration cap per layer.
    pub max_iter: usize,
    /// Rows sampled for the σ optimization.
    pub sigma_rows: usize,
    /// Standardize new data with their own statistics (as the reference).
    pub test_own_stats: bool,
    /// Seed of Ω, b and the σ subsample.
    pub seed: u64,
}

impl Default for IsmSettings {
    fn default() -> Self {
        IsmSettings {
            max_layers: 30,
            exit_silhouette: 0.95,
            tol: 0.01,
            max_iter: 200,
            sigma_rows: 200,
            test_own_stats: true,
            seed: 0,
        }
    }
}

/// One ISM layer.
#[derive(Clone, Debug)]
pub struct IsmLayer {
    /// Kernel width.
    pub sigma: f64,
    /// W (d × q).
    pub w: DMatrix<f64>,
    /// Ω (q × F), already divided by σ.
    pub omega: DMatrix<f64>,
    /// b (F).
    pub b: Vec<f64>,
    /// ISM iterations.
    pub iterations: usize,
    /// Silhouette of ZW.
    pub silhouette: f64,
}

/// A fitted W* network.
#[derive(Clone, Debug)]
pub struct IsmModel {
    /// Standardization of the training data.
    pub mean: Vec<f64>,
    /// Standard deviations.
    pub std: Vec<f64>,
    /// Layers.
    pub layers: Vec<IsmLayer>,
    /// Final projection (F × C).
    pub w_out: DMatrix<f64>,
    /// Class means of the training outputs (C × C).
    pub centers: DMatrix<f64>,
    /// Normalized HSIC (linear kernel) of the final training output.
    pub hsic: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// The last layer's projection ZW on the training rows.
    pub train_zw: DMatrix<f64>,
    /// The last feature map Φ on the training rows (n × F).
    pub train_phi: DMatrix<f64>,
    /// Settings.
    pub settings: IsmSettings,
}

fn to_mat(x: &[f64], n: usize, d: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(n, d, x)
}

/// The ISM width rule from Z's singular values `s` (descending): the
/// count whose running share of Σs stays below 1/2, plus one, clamped to
/// [2C, d].
pub fn width(s: &[f64], d: usize, classes: usize) -> usize {
    let total: f64 = s.iter().sum();
    let mut acc = 0.0;
    let mut q = 0;
    for v in s {
        acc += v;
        if acc / total < 0.5 {
            q += 1;
        }
    }
    (q + 1).max(2 * classes).min(d).min(s.len()).max(1)
}

/// Φ in the basis of Z's right singular vectors: with Z = A Vᵀ (A = U S,
/// n × r) and W = V E, returns Aᵀ(Diag(1ᵀΨ) − Ψ)A (r × r), Ψ = Γ ∘ K,
/// K = k_σ(ZW) = k_σ(AE) with zero diagonal. Φ = V (this) Vᵀ, and the rest
/// of Φ is zero, so its eigenpairs come from an r × r problem (r ≤ n, where
/// RFF layers have d = 400 > n on the small sets).
#[allow(clippy::too_many_arguments)]
pub fn phi_reduced(
    be: &Backend,
    a: &DMatrix<f64>,
    e: &DMatrix<f64>,
    y: &[u32],
    p: &[f64],
    sigma: f64,
    work: &mut Work,
) -> Result<DMatrix<f64>> {
    let (n, r) = a.shape();
    let zw = a * e;
    let q = zw.ncols();
    let rows = rows_of(&zw);
    // [ΨA | Ψ1] in one kernel product; Ψ is symmetric, so Ψ1 = (1ᵀΨ)ᵀ.
    let mut m = vec![0.0; n * (r + 1)];
    for i in 0..n {
        for c in 0..r {
            m[i * (r + 1) + c] = a[(i, c)];
        }
        m[i * (r + 1) + r] = 1.0;
    }
    let spec = Spec {
        func: Func::Gauss { sigma },
        zero_diag: true,
        gamma: Some(Gamma { la: y, lb: y, p }),
        squares: false,
    };
    let psi_a = be.kernel_product(&rows, &rows, q, &m, r + 1, &spec)?;
    // (Diag(1ᵀΨ) − Ψ) A, then Aᵀ times it.
    let la = DMatrix::from_fn(n, r, |i, c| {
        let row = &psi_a[i * (r + 1)..(i + 1) * (r + 1)];
        row[r] * a[(i, c)] - row[c]
    });
    work.madds +=
        (n * n * q) as f64 + (n * n * (r + 1)) as f64 + (n * r * r) as f64 + (n * r * q) as f64;
    if be.precision() == crate::Precision::F32 {
        // Ψ came from f32 products: an f32 GEMM loses nothing more and
        // moves half the bytes at twice the lanes.
        let at: Vec<f32> = a.as_slice().iter().map(|&v| v as f32).collect();
        let mut lr = vec![0.0f32; n * r];
        for (c, col) in la.column_iter().enumerate() {
            for (i, &v) in col.iter().enumerate() {
                lr[i * r + c] = v as f32;
            }
        }
        let mut out = vec![0.0f32; r * r];
        // Aᵀ (r × n) is A's column-major storage read with row stride n.
        crate::kernels::dense::gemm_acc(r, n, r, &at, n, 1, &lr, r, &mut out, r);
        return Ok(DMatrix::from_row_iterator(
            r,
            r,
            out.iter().map(|&v| f64::from(v)),
        ));
    }
    // An explicit transpose: nalgebra's `*` runs a blocked GEMM, `tr_mul` does not.
    Ok(a.transpose() * &la)
}

/// Z = A Vᵀ with A = U S (n × r) and V (d × r) orthonormal, r = rank, and
/// the singular values (descending), from the eigen-decomposition of the
/// smaller Gram matrix (ZᵀZ or ZZᵀ): much cheaper than an SVD of a tall
/// n × 400 matrix, and the basis only has to span Z's row space.
fn basis(z: &DMatrix<f64>) -> (DMatrix<f64>, DMatrix<f64>, Vec<f64>) {
    let (n, d) = z.shape();
    let tall = n >= d;
    let g = gram(z, tall);
    // One tridiagonal form gives the rank (from all eigenvalues) and then
    // the r top eigenvectors; none when the full column rank makes V = I.
    let mut r = 0;
    let (vecs, values) = super::eigen::top_eigenpairs_by(&g, |values| {
        let top = values.first().copied().unwrap_or(0.0).max(0.0);
        r = values
            .iter()
            .take_while(|&&v| v > 1e-12 * top && v > 0.0)
            .count();
        if tall && r == d { 0 } else { r }
    });
    let sv: Vec<f64> = values[..r].iter().map(|v| v.sqrt()).collect();
    if tall && r == d {
        // Full column rank: V = I spans the row space.
        return (z.clone(), DMatrix::identity(d, d), sv);
    }
    if tall {
        (z * &vecs, vecs, sv)
    } else {
        let a = DMatrix::from_fn(n, r, |i, c| vecs[(i, c)] * sv[c]);
        let mut v = z.transpose() * &vecs;
        for (c, mut col) in v.column_iter_mut().enumerate() {
            col /= sv[c];
        }
        (a, v, sv)
    }
}

/// ZᵀZ (`columns`) or ZZᵀ: only the blocks on and above the diagonal are
/// multiplied (half the GEMM work of `z.transpose() * z`), in parallel, and
/// mirrored.
fn gram(z: &DMatrix<f64>, columns: bool) -> DMatrix<f64> {
    use rayon::prelude::*;
    const BLOCK: usize = 64;
    let (n, d) = z.shape();
    // X (m × k) with G = X Xᵀ, read from Z's column-major storage.
    let (m, k, rs, cs) = if columns { (d, n, n, 1) } else { (n, d, 1, n) };
    let x = z.as_slice();
    let nb = m.div_ceil(BLOCK);
    let pairs: Vec<(usize, usize)> = (0..nb).flat_map(|i| (i..nb).map(move |j| (i, j))).collect();
    let blocks: Vec<Vec<f64>> = pairs
        .par_iter()
        .map(|&(bi, bj)| {
            let (i0, j0) = (bi * BLOCK, bj * BLOCK);
            let (rows, cols) = (BLOCK.min(m - i0), BLOCK.min(m - j0));
            let mut out = vec![0.0; rows * cols];
            if k > 0 {
                // SAFETY: rows i0.. and j0.. of X lie inside Z's storage at the
                // given strides, and `out` is a distinct rows × cols buffer.
                unsafe {
                    matrixmultiply::dgemm(
                        rows,
                        k,
                        cols,
                        1.0,
                        x.as_ptr().add(i0 * rs),
                        rs as isize,
                        cs as isize,
                        x.as_ptr().add(j0 * rs),
                        cs as isize,
                        rs as isize,
                        0.0,
                        out.as_mut_ptr(),
                        cols as isize,
                        1,
                    );
                }
            }
            out
        })
        .collect();
    let mut g = DMatrix::zeros(m, m);
    for (&(bi, bj), out) in pairs.iter().zip(&blocks) {
        let (i0, j0) = (bi * BLOCK, bj * BLOCK);
        let cols = BLOCK.min(m - j0);
        for (li, row) in out.chunks(cols).enumerate() {
            for (lj, &v) in row.iter().enumerate() {
                g[(i0 + li, j0 + lj)] = v;
                g[(j0 + lj, i0 + li)] = v;
            }
        }
    }
    g
}

/// Mean silhouette (Euclidean) of the rows of `x` under labels `y`; the
/// per-class distance sums are one kernel product with the one-hot labels.
pub fn silhouette(be: &Backend, x: &DMatrix<f64>, y: &[u32], classes: usize) -> Result<f64> {
    let n = x.nrows();
    let mut count = vec![0usize; classes];
    for &c in y {
        count[c as usize] += 1;
    }
    let onehot = super::metrics::one_hot(y, classes);
    let sums = be.kernel_product(
        &rows_of(x),
        &rows_of(x),
        x.ncols(),
        &onehot,
        classes,
        &Spec::dist(),
    )?;
    let mut total = 0.0;
    for i in 0..n {
        let sums = &sums[i * classes..(i + 1) * classes];
        let own = y[i] as usize;
        if count[own] <= 1 {
            continue; // scikit-learn: s = 0 for singleton clusters
        }
        let a = sums[own] / (count[own] - 1) as f64;
        let b = (0..classes)
            .filter(|&c| c != own && count[c] > 0)
            .map(|c| sums[c] / count[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let m = a.max(b);
        if m > 0.0 && b.is_finite() {
            total += (b - a) / m;
        }
    }
    Ok(total / n as f64)
}

fn rff(zw: &DMatrix<f64>, omega: &DMatrix<f64>, b: &[f64]) -> DMatrix<f64> {
    use rayon::prelude::*;
    let mut out = zw * omega;
    let scale = (2.0 / FEATURES as f64).sqrt();
    let n = out.nrows().max(1);
    // Column by column (column-major storage), the columns in parallel.
    out.as_mut_slice()
        .par_chunks_mut(n)
        .zip(b)
        .for_each(|(col, &bc)| col.iter_mut().for_each(|v| *v = scale * (*v + bc).cos()));
    out
}

fn nearest(out: &DMatrix<f64>, centers: &DMatrix<f64>) -> Vec<u32> {
    (0..out.nrows())
        .map(|i| {
            (0..centers.nrows())
                .map(|c| ((out.row(i) - centers.row(c)).norm_squared(), c))
                .fold((f64::INFINITY, 0), |b, v| if v.0 < b.0 { v } else { b })
                .1 as u32
        })
        .collect()
}

/// Per-layer report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IsmReport {
    /// 1-based layer.
    pub layer: usize,
    /// σ.
    pub sigma: f64,
    /// Width q.
    pub width: usize,
    /// ISM iterations.
    pub iterations: usize,
    /// Silhouette of ZW.
    pub silhouette: f64,
}

/// Fits W* layers and the final projection.
pub fn fit_ism(
    be: &Backend,
    train: &Labeled,
    s: &IsmSettings,
    work: &mut Work,
) -> Result<IsmModel> {
    super::check(train, "training data")?;
    let (n, d, c) = (train.len(), train.dim, train.classes);
    let y = &train.y;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let (mean, std) = super::standardize_stats(&train.x, d);
    let mut z = to_mat(&super::apply_std(&train.x, &mean, &std), n, d);
    let p = super::freqs(y, c);
    let mut layers = vec![];
    let mut last_zw = z.clone();
    let mut s_prev = f64::NEG_INFINITY;
    while layers.len() < s.max_layers {
        let zd = z.ncols();
        let zrows = rows_of(&z);
        let sigma = opt_sigma(&zrows, zd, y, c, s.sigma_rows, 1e-6, &mut rng, work);
        let (a, v, sv) = basis(&z);
        let q = width(&sv, zd, c);
        work.madds += (n * zd * zd.min(n)) as f64;
        // Φ₀ = −ZᵀΓZ = V(−AᵀΓA)Vᵀ.
        let phi0 = -(a.transpose() * gamma_times(&a, y, c));
        let (mut e, mut lam) = extreme_eigenpairs(&phi0, q, false);
        let mut iterations = 0;
        for _ in 0..s.max_iter {
            let ph = phi_reduced(be, &a, &e, y, &p, sigma, work)?;
            let (e1, l1) = extreme_eigenpairs(&ph, q, false);
            iterations += 1;
            let num: f64 = lam
                .iter()
                .zip(&l1)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let den: f64 = lam.iter().map(|a| a * a).sum::<f64>().sqrt();
            e = e1;
            lam = l1;
            if den > 0.0 && num / den < s.tol {
                break;
            }
        }
        let w = &v * &e;
        let zw = &z * &w;
        let sil = silhouette(be, &zw, y, c)?;
        work.madds += (n * n * (w.ncols() + c)) as f64;
        let omega = DMatrix::from_fn(w.ncols(), FEATURES, |_, _| normal(&mut rng) / sigma);
        let b: Vec<f64> = (0..FEATURES)
            .map(|_| rng.random::<f64>() * std::f64::consts::TAU)
            .collect();
        z = rff(&zw, &omega, &b);
        last_zw = zw;
        work.madds += (n * w.ncols() * FEATURES) as f64;
        layers.push(IsmLayer {
            sigma,
            w,
            omega,
            b,
            iterations,
            silhouette: sil,
        });
        let stop = sil > s.exit_silhouette || ((sil - s_prev).abs() < 0.001 && sil > 0.8);
        s_prev = sil;
        if stop {
            break;
        }
    }
    // Final layer: top-C eigenvectors of ΦᵀΓΦ.
    // ΦᵀΓΦ = V (AᵀΓA) Vᵀ with Φ = A Vᵀ: an r × r eigenproblem.
    let f = z.ncols();
    work.madds += (n * f * f.min(n)) as f64;
    let (a, v, _) = basis(&z);
    let (e, _) = extreme_eigenpairs(&(a.transpose() * gamma_times(&a, y, c)), c, true);
    let w_out = &v * &e;
    let out = &z * &w_out;
    let centers = DMatrix::from_row_slice(
        c,
        out.ncols(),
        &super::metrics::class_means(&rows_of(&out), out.ncols(), y, c),
    );
    let train_acc = super::accuracy(&nearest(&out, &centers), y);
    let hsic = linear_hsic(&z, y, c);
    work.madds += (n * f * f) as f64;
    Ok(IsmModel {
        mean,
        std,
        layers,
        w_out,
        centers,
        hsic,
        train_acc,
        train_zw: last_zw,
        train_phi: z,
        settings: s.clone(),
    })
}

/// ΓZ = H Y Yᵀ H Z in O(n d): centre Z's columns, sum them per class,
/// give each row its class's sum, centre again.
pub fn gamma_times(z: &DMatrix<f64>, y: &[u32], classes: usize) -> DMatrix<f64> {
    let n = z.nrows() as f64;
    let center = |m: &mut DMatrix<f64>| {
        for mut col in m.column_iter_mut() {
            let mean = col.sum() / n;
            col.add_scalar_mut(-mean);
        }
    };
    let mut zc = z.clone();
    center(&mut zc);
    let mut sums = DMatrix::zeros(classes, z.ncols());
    for (i, &c) in y.iter().enumerate() {
        let mut row = sums.row_mut(c as usize);
        row += zc.row(i);
    }
    let mut out = DMatrix::from_fn(z.nrows(), z.ncols(), |i, j| sums[(y[i] as usize, j)]);
    center(&mut out);
    out
}

/// ISM's HSIC of the rows of Φ (linear kernel K = ΦΦᵀ, Y Yᵀ one-hot,
/// Hₗ = minus column means): Σ (HₗK) ∘ (Hₗ Y Yᵀ) / (‖HₗK‖_F ‖Hₗ Y Yᵀ‖_F), in
/// O(n F²) without K: with φ̄ the mean row, μ_j = φ_j·φ̄, s_c = Σ_{i∈c} φ_i,
/// n_c the class sizes and ν_j = n_{y_j}/n,
///   num = Σ_c ‖s_c‖² − n Σ_j ν_j μ_j,  ‖HₗK‖² = ‖ΦᵀΦ‖_F² − n Σ μ²,
///   ‖Hₗ Y Yᵀ‖² = Σ_c n_c² − Σ_c n_c³ / n.
pub fn linear_hsic(phi: &DMatrix<f64>, y: &[u32], classes: usize) -> f64 {
    let (n, f) = phi.shape();
    let nf = n as f64;
    let mut count = vec![0.0f64; classes];
    y.iter().for_each(|&c| count[c as usize] += 1.0);
    let mean = phi.row_sum() / nf;
    let mu = phi * mean.transpose();
    let mut sums = DMatrix::<f64>::zeros(classes, f);
    for (i, &c) in y.iter().enumerate() {
        let mut row = sums.row_mut(c as usize);
        row += phi.row(i);
    }
    let nu_mu: f64 = y
        .iter()
        .enumerate()
        .map(|(j, &c)| count[c as usize] / nf * mu[j])
        .sum();
    let num = sums.norm_squared() - nf * nu_mu;
    let gram = phi.transpose() * phi;
    let hk = gram.norm_squared() - nf * mu.norm_squared();
    let hy: f64 = count.iter().map(|v| v * v - v * v * v / nf).sum();
    if hk > 0.0 && hy > 0.0 {
        num / (hk.sqrt() * hy.sqrt())
    } else {
        0.0
    }
}

impl IsmModel {
    /// Per-layer reports.
    pub fn reports(&self) -> Vec<IsmReport> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| IsmReport {
                layer: i + 1,
                sigma: l.sigma,
                width: l.w.ncols(),
                iterations: l.iterations,
                silhouette: l.silhouette,
            })
            .collect()
    }

    /// The reference's MSE (on ZW), CE and C (on Φ) of the training output.
    pub fn metrics(&self, y: &[u32], classes: usize) -> super::metrics::Metrics {
        // C is the linear-kernel ratio, which has an O(n F) closed form.
        let zw = rows_of(&self.train_zw);
        let phi = rows_of(&self.train_phi);
        let (q, f) = (self.train_zw.ncols(), self.train_phi.ncols());
        super::metrics::Metrics {
            mse: super::metrics::mse_sq(&zw, q, y, classes),
            ce: super::metrics::cross_entropy(&phi, f, y, classes),
            c: super::metrics::ratio_c_linear(&phi, f, y, classes),
            t: None,
        }
    }

    /// Predicted classes of new rows (nearest class mean).
    pub fn predict(&self, x: &[f64]) -> Vec<u32> {
        let d = self.mean.len();
        let n = x.len() / d;
        let xs = if self.settings.test_own_stats {
            let (m, s) = super::standardize_stats(x, d);
            super::apply_std(x, &m, &s)
        } else {
            super::apply_std(x, &self.mean, &self.std)
        };
        let mut z = to_mat(&xs, n, d);
        for l in &self.layers {
            z = rff(&(&z * &l.w), &l.omega, &l.b);
        }
        nearest(&(&z * &self.w_out), &self.centers)
    }
}

impl IsmModel {
    /// safetensors bytes: W, Ω, b per layer, the final projection and class
    /// centres as tensors; σ, iterations and settings as metadata.
    pub fn to_bytes(&self, label_values: &[i64]) -> Result<Vec<u8>> {
        use crate::output::{NamedTensor, safetensors_bytes};
        let t = |name: String, m: &DMatrix<f64>| NamedTensor {
            name,
            shape: vec![m.nrows(), m.ncols()],
            data: rows_of(m),
        };
        let d = self.mean.len();
        let mut ts = vec![
            NamedTensor {
                name: "mean".into(),
                shape: vec![d],
                data: self.mean.clone(),
            },
            NamedTensor {
                name: "std".into(),
                shape: vec![d],
                data: self.std.clone(),
            },
            t("w_out".into(), &self.w_out),
            t("centers".into(), &self.centers),
        ];
        for (l, layer) in self.layers.iter().enumerate() {
            ts.push(t(format!("w{l}"), &layer.w));
            ts.push(t(format!("omega{l}"), &layer.omega));
            ts.push(NamedTensor {
                name: format!("b{l}"),
                shape: vec![layer.b.len()],
                data: layer.b.clone(),
            });
        }
        let meta = serde_json::json!({
            "method": "hsic ism", "label_values": label_values, "layers": self.reports(),
            "hsic": self.hsic, "train_acc": self.train_acc, "settings": self.settings,
        });
        safetensors_bytes(&ts, &meta)
    }

    /// Reads [`IsmModel::to_bytes`] (the training outputs are not stored).
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<(IsmModel, Vec<i64>)> {
        let bad = |m: &str| crate::Error::Input(format!("{what}: not an HSIC W* model ({m})"));
        let (tensors, meta) = crate::output::read_safetensors(bytes)?;
        if meta["method"] != "hsic ism" {
            return Err(bad("method"));
        }
        let get = |n: &str| tensors.get(n).ok_or_else(|| bad(n));
        let mat = |n: &str| -> Result<DMatrix<f64>> {
            let (shape, data) = get(n)?;
            if shape.len() != 2 {
                return Err(bad(n));
            }
            Ok(DMatrix::from_row_slice(shape[0], shape[1], data))
        };
        let reports = meta["layers"].as_array().ok_or_else(|| bad("layers"))?;
        let mut layers = vec![];
        for (l, r) in reports.iter().enumerate() {
            layers.push(IsmLayer {
                sigma: r["sigma"].as_f64().ok_or_else(|| bad("sigma"))?,
                w: mat(&format!("w{l}"))?,
                omega: mat(&format!("omega{l}"))?,
                b: get(&format!("b{l}"))?.1.clone(),
                iterations: r["iterations"].as_u64().unwrap_or(0) as usize,
                silhouette: r["silhouette"].as_f64().unwrap_or(0.0),
            });
        }
        let settings: IsmSettings =
            serde_json::from_value(meta["settings"].clone()).map_err(|e| bad(&e.to_string()))?;
        let values: Vec<i64> = serde_json::from_value(meta["label_values"].clone())
            .map_err(|e| bad(&e.to_string()))?;
        Ok((
            IsmModel {
                mean: get("mean")?.1.clone(),
                std: get("std")?.1.clone(),
                layers,
                w_out: mat("w_out")?,
                centers: mat("centers")?,
                hsic: meta["hsic"].as_f64().unwrap_or(0.0),
                train_acc: meta["train_acc"].as_f64().unwrap_or(0.0),
                train_zw: DMatrix::zeros(0, 0),
                train_phi: DMatrix::zeros(0, 0),
                settings,
            },
            values,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_matches_the_plain_product_and_is_symmetric() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // Empty, one, odd and more than two blocks (64) in each direction.
        for &(n, d) in &[(0, 3), (3, 0), (1, 1), (7, 5), (130, 67), (65, 140)] {
            let z = DMatrix::from_fn(n, d, |_, _| next());
            for (columns, want) in [(true, z.transpose() * &z), (false, &z * z.transpose())] {
                let g = gram(&z, columns);
                assert_eq!(g.shape(), want.shape(), "{n}×{d}");
                assert!(
                    (&g - &want).norm() <= 1e-12 * (1.0 + want.norm()),
                    "{n}×{d}"
                );
                assert_eq!(g, g.transpose(), "{n}×{d}: exactly symmetric");
            }
        }
    }
}
