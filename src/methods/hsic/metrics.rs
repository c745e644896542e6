//! The reference's quality measures of a trained HSIC network's training
//! output (HSIC_REFERENCE.md §4); the O(n²) pair sums are kernel products
//! on the backend:
//!
//! ```text
//! MSE  W_s: Σ_i √(Σ_k (ӯ_ik − μ_{y_i,k})⁴) / n     (its ‖δ²‖₂ per row)
//!      W*:  Σ_i ‖z_i − μ_{y_i}‖² / n              (on the last ZW)
//! CE   mean −log p(y_i) of a multinomial logistic regression fitted to
//!      the output (L2, C = 1, intercept; scikit-learn's defaults)
//! C    mean over between-class ordered pairs of ⟨R_i, R_j⟩ / the same over
//!      within-class pairs (self-pairs included); W_s: the exact Gaussian
//!      kernel at σ_b (the reference estimates it with 10⁴ random
//!      features), W*: R = the last feature map Φ
//! T    Σ_{same class} ‖ӯ_i − ӯ_j‖ / Σ_{different class} ‖ӯ_i − ӯ_j‖ (W_s)
//! ```

use crate::engine::Backend;
use crate::error::Result;
use crate::kernels::kernel_product::Spec;
use nalgebra::DMatrix;

/// The four measures (`t` is W_s only).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Metrics {
    /// Within-class spread.
    pub mse: f64,
    /// Cross-entropy of a logistic regression on the output.
    pub ce: f64,
    /// Between/within mean kernel ratio.
    pub c: f64,
    /// Same/different class distance ratio (W_s).
    pub t: Option<f64>,
}

/// Per-class means of the rows (C × w, row-major); empty classes stay 0.
pub(crate) fn class_means(x: &[f64], w: usize, y: &[u32], classes: usize) -> Vec<f64> {
    let mut m = vec![0.0; classes * w];
    let mut n = vec![0.0f64; classes];
    for (i, &c) in y.iter().enumerate() {
        for k in 0..w {
            m[c as usize * w + k] += x[i * w + k];
        }
        n[c as usize] += 1.0;
    }
    for c in 0..classes {
        for k in 0..w {
            m[c * w + k] /= n[c].max(1.0);
        }
    }
    m
}

/// Mean over rows of `row(δ)`, δ the row's deviations from its class mean.
fn mean_over_rows(
    x: &[f64],
    w: usize,
    y: &[u32],
    classes: usize,
    row: impl Fn(&mut dyn Iterator<Item = f64>) -> f64,
) -> f64 {
    let m = class_means(x, w, y, classes);
    let s: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| row(&mut (0..w).map(|k| x[i * w + k] - m[c as usize * w + k])))
        .sum();
    s / y.len() as f64
}

/// W_s MSE: √(Σ δ⁴) per row, averaged.
pub fn mse_ws(x: &[f64], w: usize, y: &[u32], classes: usize) -> f64 {
    mean_over_rows(x, w, y, classes, |d| {
        d.map(|v| v.powi(4)).sum::<f64>().sqrt()
    })
}

/// W* MSE: squared distance to the class mean, averaged.
pub fn mse_sq(x: &[f64], w: usize, y: &[u32], classes: usize) -> f64 {
    mean_over_rows(x, w, y, classes, |d| d.map(|v| v * v).sum())
}

/// One-hot label matrix (n × C, row-major).
pub(crate) fn one_hot(y: &[u32], classes: usize) -> Vec<f64> {
    let mut m = vec![0.0; y.len() * classes];
    for (i, &c) in y.iter().enumerate() {
        m[i * classes + c as usize] = 1.0;
    }
    m
}

/// Σ f(x_i, x_j) over same-class and over different-class ordered pairs
/// (self-pairs included), as one kernel product with the one-hot labels.
pub fn class_pair_sums(
    be: &Backend,
    x: &[f64],
    w: usize,
    y: &[u32],
    classes: usize,
    spec: &Spec,
) -> Result<(f64, f64)> {
    let s = be.kernel_product(x, x, w, &one_hot(y, classes), classes, spec)?;
    let total: f64 = s.iter().sum();
    let same: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| s[i * classes + c as usize])
        .sum();
    Ok((same, total - same))
}

/// Same-class and different-class ordered pair counts.
fn pair_counts(y: &[u32], classes: usize) -> (f64, f64) {
    let mut count = vec![0.0f64; classes];
    y.iter().for_each(|&c| count[c as usize] += 1.0);
    let same: f64 = count.iter().map(|v| v * v).sum();
    (same, (y.len() as f64).powi(2) - same)
}

fn ratio_of_means(y: &[u32], classes: usize, same: f64, diff: f64) -> f64 {
    let (ws_n, bs_n) = pair_counts(y, classes);
    if bs_n == 0.0 || same == 0.0 {
        return 0.0;
    }
    (diff / bs_n) / (same / ws_n)
}

/// C with the Gaussian kernel at σ: between-class mean over within-class mean.
pub fn ratio_c_gauss(
    be: &Backend,
    x: &[f64],
    w: usize,
    y: &[u32],
    classes: usize,
    sigma: f64,
) -> Result<f64> {
    let (same, diff) = class_pair_sums(be, x, w, y, classes, &Spec::gauss(sigma))?;
    Ok(ratio_of_means(y, classes, same, diff))
}

/// C with the linear kernel ⟨x_i, x_j⟩, in O(n w): the same-class sum is
/// Σ_c ‖Σ_{i∈c} x_i‖², the total ‖Σ_i x_i‖².
pub fn ratio_c_linear(x: &[f64], w: usize, y: &[u32], classes: usize) -> f64 {
    let mut sums = vec![0.0; classes * w];
    for (i, &c) in y.iter().enumerate() {
        for k in 0..w {
            sums[c as usize * w + k] += x[i * w + k];
        }
    }
    let same: f64 = sums.iter().map(|v| v * v).sum();
    let total: f64 = (0..w)
        .map(|k| (0..classes).map(|c| sums[c * w + k]).sum::<f64>().powi(2))
        .sum();
    ratio_of_means(y, classes, same, total - same)
}

/// T: same-class over different-class sums of distances.
pub fn ratio_t(be: &Backend, x: &[f64], w: usize, y: &[u32], classes: usize) -> Result<f64> {
    let (same, diff) = class_pair_sums(be, x, w, y, classes, &Spec::dist())?;
    Ok(if diff > 0.0 { same / diff } else { 0.0 })
}

/// Mean −log p(y_i) of the multinomial logistic regression minimizing
/// Σ_i −log softmax(x_i W + b)_{y_i} + ½‖W‖² (C = 1), fitted by gradient
/// descent with Barzilai–Borwein steps and an Armijo safeguard.
pub fn cross_entropy(x: &[f64], w: usize, y: &[u32], classes: usize) -> f64 {
    let n = y.len();
    let np = (w + 1) * classes; // W (w × C) then b (C)
    // Scores X W and gradient Xᵀ R as matrix products (n × w × C each).
    let xm = DMatrix::from_row_slice(n, w, &x[..n * w]);
    let loss_grad = |p: &[f64], grad: Option<&mut [f64]>| -> (f64, f64) {
        let wm = DMatrix::from_row_slice(w, classes, &p[..w * classes]);
        let b = &p[w * classes..];
        // Z (n × C), then R = softmax(Z) − onehot(y) in place.
        let mut z = &xm * &wm;
        let mut ce = 0.0;
        let mut zi = vec![0.0; classes];
        for (i, &yi) in y.iter().enumerate() {
            for (c, v) in zi.iter_mut().enumerate() {
                *v = z[(i, c)] + b[c];
            }
            let zmax = zi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = zmax + zi.iter().map(|v| (v - zmax).exp()).sum::<f64>().ln();
            ce += lse - zi[yi as usize];
            for (c, v) in zi.iter_mut().enumerate() {
                *v = (*v - lse).exp() - (yi as usize == c) as u32 as f64;
                z[(i, c)] = *v;
            }
        }
        let mut loss = ce;
        if let Some(out) = grad {
            let gw = xm.tr_mul(&z);
            for k in 0..w {
                for c in 0..classes {
                    out[k * classes + c] = gw[(k, c)] + p[k * classes + c];
                }
            }
            for c in 0..classes {
                out[w * classes + c] = z.column(c).sum();
            }
        }
        for v in &p[..w * classes] {
            loss += 0.5 * v * v;
        }
        (loss, ce / n as f64)
    };
    let mut p = vec![0.0; np];
    let mut g = vec![0.0; np];
    let (mut f, mut ce) = loss_grad(&p, Some(&mut g));
    let g0: f64 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut step = 1.0 / (n as f64 + 1.0);
    let (mut p_old, mut g_old) = (p.clone(), g.clone());
    for it in 0..500 {
        let gn: f64 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if gn <= 1e-7 * g0.max(1.0) {
            break;
        }
        if it > 0 {
            let s: Vec<f64> = p.iter().zip(&p_old).map(|(a, b)| a - b).collect();
            let d: Vec<f64> = g.iter().zip(&g_old).map(|(a, b)| a - b).collect();
            let sd: f64 = s.iter().zip(&d).map(|(a, b)| a * b).sum();
            let dd: f64 = d.iter().map(|v| v * v).sum();
            if sd > 0.0 && dd > 0.0 {
                step = sd / dd;
            }
        }
        p_old.clone_from(&p);
        g_old.clone_from(&g);
        let mut accepted = false;
        for _ in 0..40 {
            let trial: Vec<f64> = p_old
                .iter()
                .zip(&g_old)
                .map(|(a, b)| a - step * b)
                .collect();
            let mut gt = vec![0.0; np];
            let (ft, cet) = loss_grad(&trial, Some(&mut gt));
            if ft <= f - 1e-4 * step * gn * gn {
                p = trial;
                g = gt;
                f = ft;
                ce = cet;
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    ce
}
