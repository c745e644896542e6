//! The few smallest eigenpairs of a symmetric operator known only through
//! its products with thin blocks: LOBPCG (Knyazev 2001), without a
//! preconditioner, warm-started from a block near the answer.
//!
//! Each step needs one product, with the residual block; the search
//! direction's product is carried along. The basis [X, W, P] is kept
//! orthonormal by projecting W = [R, P] off X twice and orthonormalizing
//! it through its Gram matrix's eigen-decomposition (SVQB), dropping
//! directions whose Gram eigenvalue falls under a cutoff; the same linear
//! maps are applied to the products, so no product is recomputed.
//!
//! W* uses it with products Φ·X = Aᵀ(Diag(Ψ1) − Ψ)(A X)
//! ([`super::ism::phi_times`]) when asked (`EigenSolver::Lobpcg`), so that
//! Φ is never formed.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};

/// What [`smallest`] found.
#[derive(Clone, Debug)]
pub struct Eigenpairs {
    /// The block's Ritz vectors as columns (r × m, as wide as the start
    /// block; the first k are the eigenvectors asked for), orthonormal.
    pub vectors: DMatrix<f64>,
    /// Their Ritz values, ascending.
    pub values: Vec<f64>,
    /// Products with the operator (of blocks as wide as the start block).
    pub products: usize,
    /// Whether every residual reached the tolerance.
    pub converged: bool,
}

/// Gram eigenvalues below this share of the largest mark dependent directions.
const DEPENDENT: f64 = 1e-12;

/// The `k` smallest eigenpairs of the symmetric operator `apply` (r × r;
/// `apply(X)` = M X for an r × m block X), from the start block `x0`
/// (r × m, m ≥ k, full column rank; extra columns speed up convergence
/// when eigenvalue k is close to k + 1). Stops when every one of the `k`
/// residuals ‖M x − λ x‖ is at most `tol` times the largest Ritz value's
/// magnitude, or after `max_iter` steps.
pub fn smallest(
    apply: &mut dyn FnMut(&DMatrix<f64>) -> Result<DMatrix<f64>>,
    x0: &DMatrix<f64>,
    k: usize,
    tol: f64,
    max_iter: usize,
) -> Result<Eigenpairs> {
    let (r, m) = x0.shape();
    if k == 0 || k > m || m > r {
        return Err(Error::Input(format!(
            "LOBPCG: {k} eigenpairs from a start block of {m} columns in {r} dimensions"
        )));
    }
    let x = orthonormal(x0, None).0;
    if x.ncols() < k {
        return Err(Error::Numeric(format!(
            "LOBPCG: the start block has rank {} < {k}",
            x.ncols()
        )));
    }
    let mx = apply(&x)?;
    let mut products = 1;
    let (mut x, mut mx, mut lam, _) = rayleigh_ritz(&x, &mx, x.ncols());
    let mut p: Option<(DMatrix<f64>, DMatrix<f64>)> = None;
    let mut converged = false;
    for _ in 0..max_iter {
        let res = &mx - &x * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(lam.clone()));
        let scale = lam
            .iter()
            .fold(0.0f64, |a, &v| a.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        if (0..k).all(|i| res.column(i).norm() <= tol * scale) {
            converged = true;
            break;
        }
        let mr = apply(&res)?;
        products += 1;
        // W = [R, P] and its products, off X, then orthonormal.
        let (w, mw) = match &p {
            Some((pp, mp)) => (hcat(&res, pp), hcat(&mr, mp)),
            None => (res, mr),
        };
        let (w, mw) = project_off(&x, &mx, w, mw);
        let (w, mw) = project_off(&x, &mx, w, mw);
        let (w, map) = orthonormal(&w, Some(&mw));
        let mw = map.expect("products mapped");
        if w.ncols() == 0 {
            converged = true;
            break;
        }
        let s = hcat(&x, &w);
        let ms = hcat(&mx, &mw);
        let (xn, mxn, ln, c) = rayleigh_ritz(&s, &ms, x.ncols());
        // The new direction: the part of the new block that came from W.
        let cw = c.rows(x.ncols(), w.ncols()).into_owned();
        p = Some((&w * &cw, &mw * &cw));
        x = xn;
        mx = mxn;
        lam = ln;
    }
    Ok(Eigenpairs {
        vectors: x,
        values: lam,
        products,
        converged,
    })
}

fn hcat(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(a.nrows(), a.ncols() + b.ncols());
    out.columns_mut(0, a.ncols()).copy_from(a);
    out.columns_mut(a.ncols(), b.ncols()).copy_from(b);
    out
}

/// W − X(XᵀW) and M W − M X (XᵀW), for X with orthonormal columns.
fn project_off(
    x: &DMatrix<f64>,
    mx: &DMatrix<f64>,
    w: DMatrix<f64>,
    mw: DMatrix<f64>,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let c = x.transpose() * &w;
    (w - x * &c, mw - mx * &c)
}

/// Orthonormal columns spanning `w` (dependent directions dropped) by the
/// eigen-decomposition of WᵀW; the same map applied to `mw` when given.
fn orthonormal(
    w: &DMatrix<f64>,
    mw: Option<&DMatrix<f64>>,
) -> (DMatrix<f64>, Option<DMatrix<f64>>) {
    let g = w.transpose() * w;
    let eig = SymmetricEigen::new(g);
    let top = eig.eigenvalues.iter().fold(0.0f64, |a, &v| a.max(v));
    let keep: Vec<usize> = (0..eig.eigenvalues.len())
        .filter(|&i| top > 0.0 && eig.eigenvalues[i] > DEPENDENT * top)
        .collect();
    let mut map = DMatrix::zeros(w.ncols(), keep.len());
    for (j, &i) in keep.iter().enumerate() {
        let s = 1.0 / eig.eigenvalues[i].sqrt();
        map.column_mut(j)
            .copy_from(&(eig.eigenvectors.column(i) * s));
    }
    (w * &map, mw.map(|m| m * &map))
}

/// The `k` smallest Ritz pairs of the operator on the orthonormal basis
/// `s` (with products `ms`): vectors, their products, values ascending,
/// and the coefficients (columns of s's combination).
fn rayleigh_ritz(
    s: &DMatrix<f64>,
    ms: &DMatrix<f64>,
    k: usize,
) -> (DMatrix<f64>, DMatrix<f64>, Vec<f64>, DMatrix<f64>) {
    let t = s.transpose() * ms;
    let t = (&t + t.transpose()) * 0.5;
    let eig = SymmetricEigen::new(t);
    let mut order: Vec<usize> = (0..eig.eigenvalues.len()).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]));
    let k = k.min(order.len());
    let mut c = DMatrix::zeros(s.ncols(), k);
    for (j, &i) in order[..k].iter().enumerate() {
        c.column_mut(j).copy_from(&eig.eigenvectors.column(i));
    }
    let values = order[..k].iter().map(|&i| eig.eigenvalues[i]).collect();
    (s * &c, ms * &c, values, c)
}
