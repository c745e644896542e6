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
use std::cell::OnceCell;

use super::eigen;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::lobpcg;
use super::{Work, opt_sigma_on};
use crate::data::labeled::Labeled;
use crate::data::matrix::row_major as rows_of;
use crate::engine::{Backend, Held};
use crate::error::{Error, Result};
use crate::kernels::dense::{gemm_acc, symmetric_product};
use crate::kernels::kernel_product::{Func, Gamma, Spec};
use crate::kernels::laplacian;
use crate::kernels::par::{SimdLevel, parallel_enough, simd_dispatch};
use crate::random::normal;
use crate::real::Real;

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
    /// How each ISM iteration finds Φ's smallest eigenpairs.
    #[serde(default)]
    pub eigen: EigenSolver,
    /// End a layer's iterations once they alternate between two states
    /// (see [`CYCLE_SHARE`]), keeping the state the cap would have ended
    /// on. Off in files written before it existed.
    #[serde(default)]
    pub cycle_stop: bool,
}

/// A layer's ISM iterations are in a 2-cycle when, their relative change
/// still above the tolerance, the eigenvalues lie closer to those of two
/// iterations back than this share of their distance to the last
/// iteration's. Such a layer never meets the 1% rule and runs to the cap.
/// Seen: on a 5,000-item mixture, changes alternating 92% and 1008%,
/// repeating exactly; on a 10,000-item one in f32, states whose norms
/// differ 2,700-fold, each repeating only to 5 × 10⁻⁴ of the smaller norm
/// (rounding), for 190 iterations. The two states repeat, so the state of
/// the cap's parity is the capped answer. Both states must recur (two
/// iterations in a row), so a single bounce that then settles is no cycle;
/// an alternation that dies out by a factor ρ per iteration passes only
/// for ρ > 0.99, which the cap would not have damped either (ρ²⁰⁰ > 0.13).
pub const CYCLE_SHARE: f64 = 0.01;

/// How an ISM iteration finds the q smallest eigenpairs of Φ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EigenSolver {
    /// Φ in the r-dimensional basis of Z (n²(q + r) per iteration), then a
    /// dense eigen-solve: the reference's way.
    #[default]
    Dense,
    /// LOBPCG ([`lobpcg::smallest`]) on products Φ·X ([`phi_times`],
    /// n²(q + m) each, m = q + [`GUARD`]), warm-started from the previous
    /// iteration's block, to residuals within [`LOBPCG_TOL`] of Φ's
    /// largest magnitude; Φ is never formed after a layer's first
    /// iteration, which is dense and gives the first block (a cold LOBPCG
    /// start from Φ₀'s vectors took 8–9 products, twice a dense iteration).
    /// Where Z's basis is too narrow for the block the layer is dense; a
    /// solve that does not converge in [`LOBPCG_MAX_ITER`] steps makes the
    /// iteration and the rest of its layer dense.
    Lobpcg,
    /// [`EigenSolver::Lobpcg`] on the layers where a dense iteration costs
    /// at least [`AUTO_BREAK_EVEN`] LOBPCG products
    /// ([`break_even_products`]) and n ≥ [`AUTO_ITEMS`], else
    /// [`EigenSolver::Dense`]; a layer whose solves take more products
    /// than that on average goes on densely.
    Auto,
}

/// What one kernel product costs beyond its kernel's q features and its
/// output's columns, in columns: the exponentials, the Γ weights and the
/// tile handling. Measured on the CPU (f32, one core, n = 5,000, q = 8, 20
/// and 48, outputs 23 to 801 wide): a product takes b·(66 + q + w) for a
/// b proportional to n² (docs/results.md).
pub const PRODUCT_OVERHEAD: usize = 66;

/// How many LOBPCG products cost one dense ISM iteration's product, for a
/// basis r wide and q eigenvectors: the dense product is r + 1 wide, a
/// LOBPCG one (of the residuals; the search directions' products are
/// combinations of earlier ones) q + GUARD + 1, each with the kernel's q
/// features and [`PRODUCT_OVERHEAD`]; a backend with the upper-half product
/// (`upper_half`, the CPU) builds Φ from half of it. It is 4.5 at r = 400
/// and q = 20, 3.1 at q = 48 (2.2 and 1.6 from the upper half), and does
/// not depend on n.
pub fn break_even_products(r: usize, q: usize, upper_half: bool) -> f64 {
    let lobpcg = PRODUCT_OVERHEAD + q + q + GUARD + 1;
    let dense = (PRODUCT_OVERHEAD + q + r + 1) as f64 / if upper_half { 2.0 } else { 1.0 };
    dense / lobpcg as f64
}

/// [`EigenSolver::Auto`] takes LOBPCG where a dense iteration costs at
/// least this many of its products: a warm-started solve takes about 1.7
/// products at q = 48 and 2–5 at q = 20 (r = 400, 10-class mixtures), a
/// solve at least one.
pub const AUTO_BREAK_EVEN: f64 = 2.0;

/// [`EigenSolver::Auto`] keeps the dense solve below this many items: the
/// fit takes seconds there, and dense is the reference's own rule.
pub const AUTO_ITEMS: usize = 2000;

impl EigenSolver {
    /// Whether a layer with `n` items, a basis `r` wide and `q` columns
    /// solves by LOBPCG, on a backend with the upper-half product or not.
    pub fn lobpcg(self, n: usize, r: usize, q: usize, upper_half: bool) -> bool {
        let fits = q + GUARD <= r;
        match self {
            EigenSolver::Dense => false,
            EigenSolver::Lobpcg => fits,
            EigenSolver::Auto => {
                fits && break_even_products(r, q, upper_half) >= AUTO_BREAK_EVEN && n >= AUTO_ITEMS
            }
        }
    }
}

/// Extra LOBPCG columns beyond the q wanted.
pub const GUARD: usize = 2;

/// A layer's LOBPCG solves so far, and whether its remaining iterations
/// go dense: after a solve that did not converge (the layer's spectrum is
/// hard for LOBPCG, as where the ISM oscillates at the cap), and under
/// [`EigenSolver::Auto`] once, from the second solve on, the solves have
/// averaged more products than one dense iteration costs.
#[derive(Clone, Copy, Debug)]
pub struct LayerSolves {
    eigen: EigenSolver,
    break_even: f64,
    solves: usize,
    products: usize,
    dense_rest: bool,
}

impl LayerSolves {
    /// For a layer with a basis `r` wide and `q` columns, on a backend
    /// with the upper-half product or not.
    pub fn new(eigen: EigenSolver, r: usize, q: usize, upper_half: bool) -> Self {
        LayerSolves {
            eigen,
            break_even: break_even_products(r, q, upper_half),
            solves: 0,
            products: 0,
            dense_rest: false,
        }
    }

    /// Records a solve of `products` products that converged or not.
    pub fn record(&mut self, products: usize, converged: bool) {
        self.solves += 1;
        self.products += products;
        let dearer = self.products as f64 > self.break_even * self.solves as f64;
        let costly = self.eigen == EigenSolver::Auto && self.solves >= 2 && dearer;
        self.dense_rest |= !converged || costly;
    }

    /// Whether the layer's remaining iterations are dense.
    pub fn dense_rest(&self) -> bool {
        self.dense_rest
    }
}

/// LOBPCG's residual tolerance, relative to the largest Ritz value's
/// magnitude. Φ's few dominant eigenvalues (about −10⁴ on a 10-class
/// mixture) set that scale; the rest of the q sit in a cluster near 1 whose
/// vectors a tighter tolerance chases for dozens of products without
/// changing the fit (measured in docs/results.md).
pub const LOBPCG_TOL: f64 = 1e-3;

/// LOBPCG steps per solve before the iteration, and the rest of its
/// layer, fall back to dense (a warm-started solve that converges takes
/// 1–5).
const LOBPCG_MAX_ITER: usize = 20;

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
            eigen: EigenSolver::Dense,
            cycle_stop: true,
        }
    }
}

impl IsmSettings {
    /// Rejects settings no fit can use.
    pub fn check(&self) -> Result<()> {
        if self.max_layers == 0 || self.max_iter == 0 || self.sigma_rows < 2 {
            return Err(Error::Input(format!(
                "W*: at least one layer, one ISM iteration and two σ rows, got {}, {} and {}",
                self.max_layers, self.max_iter, self.sigma_rows
            )));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0 && self.exit_silhouette.is_finite()) {
            return Err(Error::Input(format!(
                "W*: the tolerance must be ≥ 0 and the exit silhouette finite, got {} and {}",
                self.tol, self.exit_silhouette
            )));
        }
        Ok(())
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
    /// Wall seconds of the ISM iterations (0 in files of older versions).
    pub iteration_seconds: f64,
    /// The iterations ended on a 2-cycle ([`IsmSettings::cycle_stop`]).
    pub cycle: bool,
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

/// Φ in the basis of Z's row space: with Z = A Vᵀ (n × r, V orthonormal)
/// and W = V E, returns Aᵀ(Diag(1ᵀΨ) − Ψ)A (r × r), Ψ = Γ ∘ K,
/// K = k_σ(ZW) = k_σ(AE) with zero diagonal. Φ = V (this) Vᵀ, and the rest
/// of Φ is zero, so its eigenpairs come from an r × r problem (r ≤ n, where
/// RFF layers have d = 400 > n on the small sets). `am` is [A | 1]
/// row-major (n × (r + 1), [`with_ones`]), fixed for the layer, for an f64
/// backend, and `am32` the same in f32 for an f32 one; the other is empty.
/// A backend with the upper-half product (the CPU) builds it from Ψ's
/// upper half (`phi_from_upper`): n²(q + r + 1)/2 multiply-adds instead
/// of n²(q + r + 1).
#[allow(clippy::too_many_arguments)]
pub fn phi_reduced(
    be: &Backend,
    a: &DMatrix<f64>,
    ones: &Augmented,
    e: &DMatrix<f64>,
    y: &[u32],
    p: &[f64],
    sigma: f64,
    work: &mut Work,
) -> Result<DMatrix<f64>> {
    let (n, r) = a.shape();
    let w = r + 1;
    let q = e.ncols();
    let spec = psi_spec(y, p, sigma);
    let nn = (n * n) as f64;
    // Where the backend forms Φ itself (a hardware GPU), ZW = [A | 1]·[E; −āE]
    // (centred: Ψ's values do not change) is computed there too, and only
    // E goes in and Φ comes back.
    if let (Some(held), Some(at)) = (&ones.held, &ones.held_t) {
        let b = ones.centred(e);
        if let Some(phi) = be.laplacian_form_held(held, at, (&b, q), None, &spec)? {
            work.madds += nn * (q + w) as f64 + (n * r * r) as f64 + (n * w * q) as f64;
            return Ok(DMatrix::from_vec(r, r, phi));
        }
    }
    let (am, am32) = (&ones.f64s[..], &ones.f32s[..]);
    let zw = a * e;
    let rows = rows_of(&zw);
    let f32s = be.precision() == crate::real::Precision::F32;
    // Ψ comes from f32 products in an f32 fit: L and the GEMMs in f32 lose
    // nothing more, and move half the bytes at twice the lanes.
    let rows32: Vec<f32> = if f32s {
        rows.iter().map(|&v| v as f32).collect()
    } else {
        vec![]
    };
    // Where the backend has it (the CPU), Ψ's upper half: [UA | U1] and
    // Uᵀ1, from half the kernel values and half the product.
    let upper = if f32s {
        be.kernel_product_upper_f32(&rows32, q, am32, w, &spec)?
            .map(|(v, sums)| {
                phi_from_upper(v, &sums, am32, r)
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
    } else {
        be.kernel_product_upper(&rows, q, am, w, &spec)?
            .map(|(v, sums)| phi_from_upper(v, &sums, am, r))
    };
    let phi = match upper {
        Some(phi) => {
            work.madds += nn * (q + w) as f64 / 2.0 + (n * r * r) as f64 + (n * r * q) as f64;
            phi
        }
        None => {
            // [ΨA | Ψ1] in one kernel product; Ψ is symmetric, so Ψ1 = (1ᵀΨ)ᵀ.
            // Then L = (Diag(1ᵀΨ) − Ψ) A in place of ΨA (row stride r + 1),
            // and Aᵀ L, Aᵀ read from [A | 1] with strides (1, r + 1); the
            // product is symmetric (L's operator is).
            work.madds += nn * (q + w) as f64 + (n * r * r) as f64 + (n * r * q) as f64;
            // With [A | 1] held, M stays on the device and only ZW's rows
            // cross (in f32 as the unheld path sends them).
            if f32s {
                let mut l = match &ones.held {
                    Some(held) => {
                        let rows: Vec<f64> = rows32.iter().map(|&v| f64::from(v)).collect();
                        let l = be.kernel_product_held(&rows, q, held, &spec)?;
                        l.into_iter().map(|v| v as f32).collect()
                    }
                    None => be.kernel_product_f32(&rows32, &rows32, q, am32, w, &spec)?,
                };
                laplacian::cpu(&mut l, am32, r);
                let out = symmetric_product(r, n, am32, (1, w), &l, (w, 1));
                out.iter().map(|&v| f64::from(v)).collect()
            } else {
                let mut l = match &ones.held {
                    Some(held) => be.kernel_product_held(&rows, q, held, &spec)?,
                    None => be.kernel_product(&rows, &rows, q, am, w, &spec)?,
                };
                laplacian::cpu(&mut l, am, r);
                symmetric_product(r, n, am, (1, w), &l, (w, 1))
            }
        }
    };
    Ok(DMatrix::from_vec(r, r, phi))
}

/// Φ·X without Φ: Aᵀ(Diag(Ψ1) − Ψ)(A X) for a thin X (r × m), with Ψ as
/// in [`phi_reduced`] (K of the rows of ZW = A E, width q). One kernel
/// product of width m + 1: n²(q + m + 1) multiply-adds, against
/// n²(q + r + 1) for Φ: the product [`EigenSolver::Lobpcg`] solves with.
/// Where the backend forms it ([`Backend::laplacian_form_held`]) ZW and
/// A X are formed on the device from E and X; else ZW's rows are formed
/// once into `zw_rows`, shared by the products of one solve.
#[allow(clippy::too_many_arguments)]
pub fn phi_times(
    be: &Backend,
    (a, ones, e): (&DMatrix<f64>, &Augmented, &DMatrix<f64>),
    zw_rows: &OnceCell<Vec<f64>>,
    x: &DMatrix<f64>,
    y: &[u32],
    p: &[f64],
    sigma: f64,
    work: &mut Work,
) -> Result<DMatrix<f64>> {
    let (n, r) = a.shape();
    let (q, m) = (e.ncols(), x.ncols());
    let spec = psi_spec(y, p, sigma);
    work.madds += (n * n * q) as f64 + (n * n * (m + 1)) as f64 + 2.0 * (n * r * m) as f64;
    // Where the backend forms it (a hardware GPU): ZW, A·X and the product
    // on the device, E and X in and r × m out.
    if let (Some(held), Some(at)) = (&ones.held, &ones.held_t) {
        let b = ones.centred(e);
        let xr = rows_of(x);
        if let Some(v) = be.laplacian_form_held(held, at, (&b, q), Some((&xr, m)), &spec)? {
            work.madds += (n * (r + 1) * q) as f64;
            return Ok(DMatrix::from_row_slice(r, m, &v));
        }
    }
    let zw_rows = zw_rows.get_or_init(|| rows_of(&(a * e)));
    let b = a * x;
    let bm = with_ones::<f64>(&b);
    // [ΨB | Ψ1] → L = Diag(Ψ1) B − ΨB, row-major n × (m + 1).
    let mut l: Vec<f64> = if be.precision() == crate::real::Precision::F32 {
        let rows32: Vec<f32> = zw_rows.iter().map(|&v| v as f32).collect();
        let bm32: Vec<f32> = bm.iter().map(|&v| v as f32).collect();
        be.kernel_product_f32(&rows32, &rows32, q, &bm32, m + 1, &spec)?
            .into_iter()
            .map(f64::from)
            .collect()
    } else {
        be.kernel_product(zw_rows, zw_rows, q, &bm, m + 1, &spec)?
    };
    laplacian::cpu(&mut l, &bm, m);
    let l = DMatrix::from_fn(n, m, |i, j| l[i * (m + 1) + j]);
    Ok(a.transpose() * l)
}

/// An ISM iteration's q eigenvectors (as columns) and eigenvalues.
type Eigen = (DMatrix<f64>, Vec<f64>);

/// One ISM iteration's eigenpairs by LOBPCG from `block` (updated), or
/// None when the solve did not converge; with the products it took.
#[allow(clippy::too_many_arguments)]
fn lobpcg_step(
    be: &Backend,
    (a, ones): (&DMatrix<f64>, &Augmented),
    e: &DMatrix<f64>,
    block: &mut DMatrix<f64>,
    q: usize,
    y: &[u32],
    p: &[f64],
    sigma: f64,
    work: &mut Work,
) -> Result<(Option<Eigen>, usize)> {
    // ZW's rows on the host only where a product takes them there.
    let zw_rows = OnceCell::new();
    let mut apply = |x: &DMatrix<f64>| phi_times(be, (a, ones, e), &zw_rows, x, y, p, sigma, work);
    let pairs = lobpcg::smallest(&mut apply, block, q, LOBPCG_TOL, LOBPCG_MAX_ITER)?;
    if !pairs.converged {
        return Ok((None, pairs.products));
    }
    *block = continuous_signs(pairs.vectors, block);
    let solved = (block.columns(0, q).into_owned(), pairs.values[..q].to_vec());
    Ok((Some(solved), pairs.products))
}

/// What an ISM iteration's eigenvalues say about going on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Iterate again.
    Go,
    /// The relative change fell below the tolerance: keep the new state.
    Converged,
    /// A 2-cycle ([`CYCLE_SHARE`]): keep the new state if `take_new`, else
    /// the previous one (the state the cap would end on).
    Cycle {
        /// Keep the new state.
        take_new: bool,
    },
}

/// The ISM's stopping rule for one layer: the reference's relative
/// eigenvalue change, and the 2-cycle test of [`IsmSettings::cycle_stop`].
#[derive(Clone, Debug)]
pub struct IterationStop {
    tol: f64,
    max_iter: usize,
    cycle_stop: bool,
    last: Vec<f64>,
    before: Option<Vec<f64>>,
    /// Iterations in a row that returned to the state of two back.
    returns: usize,
    /// Iterations seen.
    pub iterations: usize,
}

impl IterationStop {
    /// The rule of `s`, from the starting eigenvalues.
    pub fn new(s: &IsmSettings, start: Vec<f64>) -> Self {
        IterationStop {
            tol: s.tol,
            max_iter: s.max_iter,
            cycle_stop: s.cycle_stop,
            last: start,
            before: None,
            returns: 0,
            iterations: 0,
        }
    }

    /// The next iteration's eigenvalues.
    pub fn next(&mut self, lam: Vec<f64>) -> Step {
        self.iterations += 1;
        if relative_change(&self.last, &lam) < self.tol {
            return Step::Converged;
        }
        let one_back = distance(&self.last, &lam);
        let two_back = self.before.as_ref().map(|l| distance(l, &lam));
        let returned = two_back.is_some_and(|d| d < CYCLE_SHARE * one_back);
        self.returns = if returned { self.returns + 1 } else { 0 };
        // Both states must recur: one return can be a single bounce that
        // then converges.
        if self.cycle_stop && self.returns >= 2 {
            // The cap's state is this one if the cap is an even number of
            // iterations away.
            let left = self.max_iter.saturating_sub(self.iterations);
            return Step::Cycle {
                take_new: left.is_multiple_of(2),
            };
        }
        self.before = Some(std::mem::replace(&mut self.last, lam));
        Step::Go
    }
}

/// ‖new − old‖.
fn distance(old: &[f64], new: &[f64]) -> f64 {
    old.iter()
        .zip(new)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// ‖new − old‖ / ‖old‖, the ISM's stopping measure (infinite for a zero
/// `old`, so that it never stops on it).
fn relative_change(old: &[f64], new: &[f64]) -> f64 {
    let num = distance(old, new);
    let den: f64 = old.iter().map(|a| a * a).sum::<f64>().sqrt();
    if den > 0.0 { num / den } else { f64::INFINITY }
}

/// Eigenvectors are signed arbitrarily, and the next layer's random
/// features see the sign: each column of `v` flipped to agree with the same
/// column of `prev` (none when `prev` is empty).
fn continuous_signs(mut v: DMatrix<f64>, prev: &DMatrix<f64>) -> DMatrix<f64> {
    for j in 0..v.ncols().min(prev.ncols()) {
        if v.column(j).dot(&prev.column(j)) < 0.0 {
            v.column_mut(j).neg_mut();
        }
    }
    v
}

/// Ψ = Γ ∘ K with K the Gaussian kernel of width σ, zero on the diagonal,
/// as a kernel-product spec.
fn psi_spec<'a>(y: &'a [u32], p: &'a [f64], sigma: f64) -> Spec<'a> {
    Spec {
        func: Func::Gauss { sigma },
        zero_diag: true,
        gamma: Some(Gamma { la: y, lb: y, p }),
        squares: false,
        part: (0, 1),
    }
}

/// Φ = Aᵀ(Diag(Ψ1) − Ψ)A (r × r, row-major) from Ψ's upper half U
/// (Ψ = U + Uᵀ): `v` = [UA | U1] (n × (r + 1)), `col_sums` = Uᵀ1 and `am`
/// = [A | 1]. With L' = ½ Diag(Ψ1) A − UA, Φ = AᵀL' + (AᵀL')ᵀ.
fn phi_from_upper<T: Real>(mut v: Vec<T>, col_sums: &[T], am: &[T], r: usize) -> Vec<T> {
    let w = r + 1;
    let n = col_sums.len();
    let half = T::from_f64(0.5);
    for ((vr, ar), &c) in v.chunks_exact_mut(w).zip(am.chunks_exact(w)).zip(col_sums) {
        let h = (vr[r] + c) * half;
        vr[..r]
            .iter_mut()
            .zip(&ar[..r])
            .for_each(|(x, &av)| *x = h * av - *x);
    }
    // G = AᵀL' as fixed chunks of the items, each one GEMM (which packs
    // its rows of A and L' once), added in order.
    const CHUNKS: usize = 8;
    let rows_per = n.div_ceil(CHUNKS).max(1);
    let chunk = |i0: usize| {
        let rows = rows_per.min(n - i0);
        let mut g = vec![T::ZERO; r * r];
        gemm_acc(r, rows, r, &am[i0 * w..], 1, w, &v[i0 * w..], w, &mut g, r);
        g
    };
    let starts: Vec<usize> = (0..n).step_by(rows_per).collect();
    let parts: Vec<Vec<T>> = if parallel_enough((n * r * r) >> 4) {
        starts.into_par_iter().map(chunk).collect()
    } else {
        starts.into_iter().map(chunk).collect()
    };
    let mut g = vec![T::ZERO; r * r];
    for p in &parts {
        g.iter_mut().zip(p).for_each(|(s, &x)| *s += x);
    }
    let mut phi = vec![T::ZERO; r * r];
    for i in 0..r {
        for j in 0..r {
            phi[i * r + j] = g[i * r + j] + g[j * r + i];
        }
    }
    phi
}

/// A layer's [A | 1] ([`with_ones`]), the M of its Φ builds, fixed for
/// all its ISM iterations: on the host in the fit's precision, and held by
/// the backend where Φ takes whole kernel products (a GPU, one process),
/// so that it crosses to the device once per layer instead of once per
/// iteration. Where the backend also forms Φ itself (a hardware GPU), Aᵀ
/// is held too, and a build reads back Φ's r × r instead of the product's
/// n × (r + 1).
#[derive(Debug)]
pub struct Augmented {
    f64s: Vec<f64>,
    f32s: Vec<f32>,
    held: Option<Held>,
    /// Aᵀ (r rows of n), held with [A | 1] so that Φ = Aᵀ L is formed
    /// where the product is ([`Backend::laplacian_form_held`]).
    held_t: Option<Held>,
    /// A's column means ā (r × 1), which centre ZW there.
    mean: DMatrix<f64>,
}

impl Augmented {
    /// [A | 1] for `be`; `upper_half` is [`Backend::has_upper_half`] (whose
    /// Φ builds never take the whole product).
    pub fn new(be: &Backend, a: &DMatrix<f64>, upper_half: bool) -> Result<Self> {
        let f32s = be.precision() == crate::real::Precision::F32;
        let held = if !upper_half && be.collective().world() == 1 {
            Some(be.hold_product_operand(with_ones(a), a.ncols() + 1)?)
        } else {
            None
        };
        // Aᵀ only where [A | 1] is on the device and Φ is formed there.
        let on_device = held.as_ref().is_some_and(|h| h.is_on_device());
        let held_t = if on_device && a.nrows() > 0 && be.forms_laplacian() {
            // A's column-major storage is Aᵀ row-major.
            Some(be.hold_product_operand(a.as_slice().to_vec(), a.nrows().max(1))?)
        } else {
            None
        };
        Ok(Augmented {
            f64s: if f32s { vec![] } else { with_ones(a) },
            f32s: if f32s { with_ones(a) } else { vec![] },
            held,
            held_t,
            mean: DMatrix::from_iterator(
                a.ncols(),
                1,
                a.column_iter().map(|c| c.sum() / a.nrows().max(1) as f64),
            ),
        })
    }

    /// [E; −āE] ((r + 1) × q, row-major): [A | 1] times it is ZW = A·E
    /// centred on its mean.
    fn centred(&self, e: &DMatrix<f64>) -> Vec<f64> {
        let mut b = Vec::with_capacity((e.nrows() + 1) * e.ncols());
        b.extend(rows_of(e));
        b.extend((self.mean.transpose() * e).iter().map(|v| -v));
        b
    }
}

/// [A | 1] row-major (n × (r + 1)): the M of the Φ builds.
pub fn with_ones<T: Real>(a: &DMatrix<f64>) -> Vec<T> {
    let (n, r) = a.shape();
    let w = r + 1;
    let mut m = vec![T::ONE; n * w];
    // A block of rows at a time, column by column within it: contiguous
    // reads of A's storage, and writes within a block that stays in cache
    // (a whole column's strided writes touch n lines each).
    const ROWS: usize = 32;
    for (b, block) in m.chunks_mut(ROWS * w).enumerate() {
        let i0 = b * ROWS;
        for (c, col) in a.column_iter().enumerate() {
            for (li, &v) in col.as_slice()[i0..i0 + block.len() / w].iter().enumerate() {
                block[li * w + c] = T::from_f64(v);
            }
        }
    }
    m
}

/// Eigenvalues of ZᵀZ (or ZZᵀ) at or below this share of the largest are
/// Z's numerical null space (singular values below 10⁻⁶ of the largest).
const RANK_CUTOFF: f64 = 1e-12;

/// The pivoted Cholesky factorization stops when every remaining diagonal
/// entry is below this share of the largest one: far enough below
/// [`RANK_CUTOFF`] that no direction the rank rule keeps is lost, far
/// enough above f64 rounding of the Schur complement (~10⁻¹⁶).
const PIVOT_CUTOFF: f64 = 1e-14;

/// The basis of an f32 fit keeps the directions whose eigenvalue of ZᵀZ is
/// above this share of the largest (singular values above 10⁻⁴). Leaving
/// out a direction of relative eigenvalue ε moves ZW by about ε‖Φ‖/gap
/// relative, and the f32 kernel values the fit is built on already carry
/// ~6·10⁻⁸ relative error, which moves ZW by as much: below this cutoff a
/// direction changes nothing an f32 fit can resolve, and it costs n² per
/// ISM iteration.
pub const F32_BASIS_CUTOFF: f64 = 1e-8;

/// The leading values above `share` times the first (and above 0).
fn count_above(values: &[f64], share: f64) -> usize {
    let top = values.first().copied().unwrap_or(0.0).max(0.0);
    values
        .iter()
        .take_while(|&&v| v > share * top && v > 0.0)
        .count()
}

/// Z ≈ A Vᵀ with V (d × r) orthonormal and A = Z V (n × r; None when it is
/// Z itself, V = I), Z's singular
/// values above the rank cutoff (descending; the width rule's input), and
/// Φ₀ = −AᵀΓA reduced for its smallest eigenpairs. V spans the directions
/// whose eigenvalue of ZᵀZ is above `keep` times the largest (`keep` ≥
/// [`RANK_CUTOFF`]: the numerical rank), and at least `min_keep` of them.
///
/// The Gram matrix `g` = G ([`gram`] of Z: ZᵀZ when n ≥ d, else ZZᵀ; the
/// final layer also uses it for the HSIC of Φ) is factored by a
/// pivoted Cholesky G ≈ L Lᵀ (L m × k) that stops at the numerical rank k;
/// G's nonzero eigenpairs are then those of the small k × k LᵀL (LᵀL u = λu
/// ⇒ G Lu = λ Lu), so no m × m eigen-solve is needed. The RFF layers' 400
/// features typically have rank 20–90. Past m/2 pivots G's eigen-solve
/// decides: if the rank is above m/2 and Z is tall, V = I and A = Z (the
/// whole row space, as the reference works in, at most twice the reduced
/// size), and Φ₀ of that case is reduced on the other thread meanwhile.
fn basis(
    z: &DMatrix<f64>,
    g: &DMatrix<f64>,
    y: &[u32],
    classes: usize,
    keep: f64,
    min_keep: usize,
) -> (Option<DMatrix<f64>>, DMatrix<f64>, Vec<f64>, eigen::Reduced) {
    let (n, d) = z.shape();
    let tall = n >= d;
    let m = g.nrows();
    let phi0 = |a: &DMatrix<f64>| eigen::reduce(&-gamma_gram(a, y, classes), false);
    // Directions kept, of the rank r.
    let kept = |values: &[f64], r: usize| {
        count_above(values, keep.max(RANK_CUTOFF))
            .max(min_keep)
            .min(r)
    };
    // The factorization may stop above the rank cutoff when the basis keeps
    // less (f32): the width rule is then checked against what it leaves out.
    let pivots = PIVOT_CUTOFF.max(keep * 1e-2);
    let factored = pivoted_cholesky(g, pivots).and_then(|(l, rest)| {
        // Eigenvectors of G: L u for the top eigenpairs (u, λ) of LᵀL.
        let mut r = 0;
        let (u, values) = eigen::top_eigenpairs_by(&gram(&l, true), |values| {
            r = count_above(values, RANK_CUTOFF);
            kept(values, r)
        });
        let sv: Vec<f64> = values[..r].iter().map(|v| v.sqrt()).collect();
        let exact = pivots <= PIVOT_CUTOFF || width_is_certain(&sv, rest, m - l.ncols(), classes);
        exact.then(|| (orthonormal(&l * &u), sv))
    });
    let (vecs, sv) = match factored {
        Some(found) => found,
        None => {
            let mut r = 0;
            let high = |r: usize| tall && r > m / 2;
            let ((vecs, values), full_phi0) = rayon::join(
                || {
                    eigen::top_eigenpairs_by(g, |values| {
                        r = count_above(values, RANK_CUTOFF);
                        if high(r) { 0 } else { kept(values, r) }
                    })
                },
                || tall.then(|| phi0(z)),
            );
            let sv: Vec<f64> = values[..r].iter().map(|v| v.sqrt()).collect();
            if high(r) {
                let full_phi0 = full_phi0.expect("tall");
                return (None, DMatrix::identity(d, d), sv, full_phi0);
            }
            (vecs, sv)
        }
    };
    // Tall: `vecs` spans the row space. Wide: it spans the column space,
    // and Zᵀ maps it onto the row space.
    let v = if tall {
        vecs
    } else {
        orthonormal(z.transpose() * &vecs)
    };
    let a = z * &v;
    let phi0 = phi0(&a);
    (Some(a), v, sv, phi0)
}

/// Whether [`width`] on Z's singular values is sure to be what it is on
/// `sv`, the square roots of the eigenvalues of L Lᵀ, when G = L Lᵀ + S with
/// S ⪰ 0 of trace `rest` over `missing` dimensions. G's eigenvalues lie in
/// [λᵢ(LLᵀ), λᵢ(LLᵀ) + rest] (Weyl), and the left-out singular values sum to
/// at most √(missing · rest) (Cauchy–Schwarz); the rule's count must then
/// come out the same at both ends of every partial sum's range.
fn width_is_certain(sv: &[f64], rest: f64, missing: usize, classes: usize) -> bool {
    if sv.len() < 2 * classes {
        return false;
    }
    let slack: Vec<f64> = sv.iter().map(|&s| (s * s + rest).sqrt() - s).collect();
    let total_lo: f64 = sv.iter().sum();
    let total_hi = total_lo + slack.iter().sum::<f64>() + (missing as f64 * rest).sqrt();
    let (mut lo, mut hi) = (0.0, 0.0);
    sv.iter().zip(&slack).all(|(&s, &e)| {
        lo += s;
        hi += s + e;
        // Below half of the total at both ends, or above at both.
        hi < 0.5 * total_lo || lo >= 0.5 * total_hi
    })
}

/// G ≈ L Lᵀ by Cholesky with complete pivoting (largest remaining diagonal
/// first), stopped when every remaining diagonal entry is at most `rel`
/// times G's largest; L (m × k) in G's own row order, and the trace of the
/// remaining Schur complement S = G − L Lᵀ (positive semidefinite). None
/// when more than m/2 pivots are needed, where the factor saves nothing.
fn pivoted_cholesky(g: &DMatrix<f64>, rel: f64) -> Option<(DMatrix<f64>, f64)> {
    let m = g.nrows();
    let mut resid: Vec<f64> = (0..m).map(|i| g[(i, i)]).collect();
    let top = resid.iter().copied().fold(0.0, f64::max);
    let mut cols: Vec<Vec<f64>> = vec![];
    let mut taken = vec![false; m];
    let level = SimdLevel::current();
    // Past m/2 pivots the factor plus its k × k eigen-solve costs about as
    // much as the m × m one: give up (full rank is the common case then).
    while cols.len() <= m / 2 {
        let (p, &dp) = resid
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        if dp.is_nan() || dp <= rel * top {
            break;
        }
        // Column p of the Schur complement, scaled by its pivot.
        let mut col: Vec<f64> = g.column(p).iter().copied().collect();
        schur_column_at(level, &mut col, &cols, p);
        let piv = dp.sqrt();
        for (i, c) in col.iter_mut().enumerate() {
            *c = if taken[i] { 0.0 } else { *c / piv };
        }
        col[p] = piv;
        taken[p] = true;
        for (i, c) in col.iter().enumerate() {
            if !taken[i] {
                resid[i] -= c * c;
            }
        }
        cols.push(col);
    }
    if cols.len() > m / 2 {
        return None;
    }
    let rest: f64 = (0..m)
        .filter(|&i| !taken[i])
        .map(|i| resid[i].max(0.0))
        .sum();
    Some((DMatrix::from_fn(m, cols.len(), |i, c| cols[c][i]), rest))
}

simd_dispatch! {
    /// [`schur_column`] for a SIMD level.
    fn schur_column_at<T>(col: &mut [T], prev: &[Vec<T>], p: usize) -> () = schur_column
}

/// col −= Σ_t prev_t[p] prev_t: column p of the Schur complement.
#[inline(always)]
fn schur_column<T: Real>(col: &mut [T], prev: &[Vec<T>], p: usize) {
    for l in prev {
        let f = -l[p];
        col.iter_mut()
            .zip(l)
            .for_each(|(c, &v)| *c = f.mul_add(v, *c));
    }
}

/// An orthonormal basis of the columns of `b` (full column rank): the Q of
/// its thin QR factorization.
fn orthonormal(b: DMatrix<f64>) -> DMatrix<f64> {
    if b.ncols() == 0 {
        return b;
    }
    b.qr().q()
}

/// ZᵀZ (`columns`) or ZZᵀ, from Z's column-major storage (half the GEMM
/// work of `z.transpose() * z`, in parallel).
fn gram(z: &DMatrix<f64>, columns: bool) -> DMatrix<f64> {
    let (n, d) = z.shape();
    // X (m × k) with G = X Xᵀ; (row, column) strides into the storage.
    let (m, k, xs) = if columns {
        (d, n, (n, 1))
    } else {
        (n, d, (1, n))
    };
    let g = symmetric_product(m, k, z.as_slice(), xs, z.as_slice(), (xs.1, xs.0));
    DMatrix::from_vec(m, m, g)
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

/// ψ(ZW) = √(2/F) cos(ZW Ω + b), feature by feature (columns of the
/// column-major output) in parallel: each is b_j plus axpys of ZW's q
/// columns, then the cosines, in vector code.
fn rff(zw: &DMatrix<f64>, omega: &DMatrix<f64>, b: &[f64]) -> DMatrix<f64> {
    let (n, q) = zw.shape();
    let scale = (2.0 / FEATURES as f64).sqrt();
    let level = SimdLevel::current();
    let mut out = DMatrix::zeros(n, omega.ncols());
    out.as_mut_slice()
        .par_chunks_mut(n.max(1))
        .zip(omega.as_slice().par_chunks(q.max(1)))
        .zip(b)
        .for_each(|((col, w), &bj)| feature_at(level, col, zw.as_slice(), w, bj, scale));
    out
}

simd_dispatch! {
    /// [`feature`] for a SIMD level.
    fn feature_at<T>(col: &mut [T], zw: &[T], w: &[T], b: T, scale: f64) -> () = feature
}

/// One RFF column: col = scale · cos(b + Σ_c w_c zw_c), zw column-major.
#[inline(always)]
fn feature<T: Real>(col: &mut [T], zw: &[T], w: &[T], b: T, scale: f64) {
    let n = col.len();
    col.fill(b);
    for (c, &wc) in w.iter().enumerate() {
        col.iter_mut()
            .zip(&zw[c * n..(c + 1) * n])
            .for_each(|(v, &x)| *v += wc * x);
    }
    scaled_cos(col, scale);
}

/// v ← s cos(v) over a slice: [`cos_reduced`] (vectorizes) where every
/// argument is below 2¹⁹·π/2 in magnitude, else std's `cos`.
#[inline(always)]
fn scaled_cos<T: Real>(v: &mut [T], s: f64) {
    const LIMIT: f64 = 8.0e5;
    for chunk in v.chunks_mut(64) {
        if chunk.iter().all(|x| x.to_f64().abs() < LIMIT) {
            chunk
                .iter_mut()
                .for_each(|x| *x = T::from_f64(s * cos_reduced(x.to_f64())));
        } else {
            chunk
                .iter_mut()
                .for_each(|x| *x = T::from_f64(s * x.to_f64().cos()));
        }
    }
}

/// cos x for |x| < 2¹⁹·π/2 in straight-line code: x = kπ/2 + r with the
/// three-part π/2 of fdlibm (k·π/2 exact to ~10⁻²⁵), then fdlibm's
/// minimax kernels for sin and cos on |r| ≤ π/4 and the quadrant k mod 4.
/// Within an ulp or two of std's `cos`, which is a library call per value.
// fdlibm's constants, digit for digit.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn cos_reduced(x: f64) -> f64 {
    const PIO2_1: f64 = 1.570_796_326_734_125_614_17;
    const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11;
    const PIO2_3: f64 = 2.022_266_248_711_166_455_80e-21;
    // Adding 1.5·2⁵² rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let t = x * std::f64::consts::FRAC_2_PI + SHIFT;
    let kf = t - SHIFT;
    let k = t.to_bits().wrapping_sub(SHIFT.to_bits());
    let r = ((x - kf * PIO2_1) - kf * PIO2_2) - kf * PIO2_3;
    let z = r * r;
    let cos_r = {
        let p = z
            * (4.166_666_666_666_660_190_37e-2
                + z * (-1.388_888_888_887_410_957_49e-3
                    + z * (2.480_158_728_947_672_941_78e-5
                        + z * (-2.755_731_435_139_066_330_35e-7
                            + z * (2.087_572_321_298_174_827_90e-9
                                + z * -1.135_964_755_778_819_482_65e-11)))));
        let hz = 0.5 * z;
        let w = 1.0 - hz;
        w + (((1.0 - w) - hz) + z * p)
    };
    let sin_r = {
        let p = 8.333_333_333_322_489_461_24e-3
            + z * (-1.984_126_982_985_794_931_34e-4
                + z * (2.755_731_370_707_006_767_89e-6
                    + z * (-2.505_076_025_340_686_341_95e-8
                        + z * 1.589_690_995_211_550_102_21e-10)));
        r + r * z * (-1.666_666_666_666_663_243_48e-1 + z * p)
    };
    // cos(kπ/2 + r) = cos r, −sin r, −cos r, sin r for k mod 4 = 0..3.
    let v = if k & 1 == 0 { cos_r } else { sin_r };
    if (k.wrapping_add(1)) & 2 == 0 { v } else { -v }
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
    /// Wall seconds of the ISM iterations.
    pub iteration_seconds: f64,
    /// The iterations ended on a 2-cycle.
    pub cycle: bool,
}

/// Fits W* layers and the final projection.
pub fn fit_ism(
    be: &Backend,
    train: &Labeled,
    s: &IsmSettings,
    work: &mut Work,
) -> Result<IsmModel> {
    super::check(train, "training data")?;
    s.check()?;
    let (n, d, c) = (train.len(), train.dim, train.classes);
    let y = &train.y;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let (mean, std) = super::standardize_stats(&train.x, d);
    let mut z = to_mat(&super::apply_std(&train.x, &mean, &std), n, d);
    let p = super::freqs(y, c);
    let mut layers = vec![];
    let mut last_zw = z.clone();
    let mut s_prev = f64::NEG_INFINITY;
    let keep = match be.precision() {
        crate::real::Precision::F32 => F32_BASIS_CUTOFF,
        crate::real::Precision::F64 => RANK_CUTOFF,
    };
    while layers.len() < s.max_layers {
        crate::train::check_stop()?;
        let zd = z.ncols();
        // σ is optimized on sampled rows: gather only those from Z.
        let idx = super::sample_rows(&mut rng, n, s.sigma_rows);
        let mut zs = vec![0.0; idx.len() * zd];
        // Column by column: each of Z's columns is contiguous.
        for (col, zc) in z.column_iter().enumerate() {
            for (k, &i) in idx.iter().enumerate() {
                zs[k * zd + col] = zc[i];
            }
        }
        let ys: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
        let all: Vec<usize> = (0..idx.len()).collect();
        // σ and the basis both depend on Z only: one runs while the other's
        // serial parts (the pivoted factorization, the eigen-solve) leave a
        // thread free.
        // Φ₀ = −ZᵀΓZ = V(−AᵀΓA)Vᵀ comes with the basis.
        let (sigma, (a, v, sv, phi0)) = rayon::join(
            || opt_sigma_on(&zs, zd, &ys, c, &all, 1e-6, work),
            || basis(&z, &gram(&z, n >= zd), y, c, keep, 2 * c),
        );
        let a = a.as_ref().unwrap_or(&z);
        work.madds += (n * zd * zd.min(n)) as f64;
        let q = width(&sv, zd, c);
        let (mut e, lam) = phi0.extreme(q);
        let upper_half = be.has_upper_half()?;
        let ones = Augmented::new(be, a, upper_half)?;
        let lobpcg = s.eigen.lobpcg(n, a.ncols(), q, upper_half);
        // LOBPCG's start: the block (with its guard columns) of the last
        // solve, dense or not.
        let mut block = DMatrix::zeros(0, 0);
        let mut solves = LayerSolves::new(s.eigen, a.ncols(), q, upper_half);

        let mut stop = IterationStop::new(s, lam);
        let mut cycle = false;
        let t_iter = std::time::Instant::now();
        for _ in 0..s.max_iter {
            crate::train::check_stop()?;
            let solved = if lobpcg && !solves.dense_rest() && block.ncols() > 0 {
                let (pairs, used) =
                    lobpcg_step(be, (a, &ones), &e, &mut block, q, y, &p, sigma, work)?;
                solves.record(used, pairs.is_some());
                pairs
            } else {
                None
            };
            let (e1, l1) = match solved {
                Some(pairs) => pairs,
                None => {
                    let ph = phi_reduced(be, a, &ones, &e, y, &p, sigma, work)?;
                    if lobpcg && !solves.dense_rest() {
                        let (v, l) = eigen::extreme_eigenpairs(&ph, q + GUARD, false);
                        let v = continuous_signs(v, &block);
                        block = v.clone();
                        (v.columns(0, q).into_owned(), l[..q].to_vec())
                    } else {
                        eigen::extreme_eigenpairs(&ph, q, false)
                    }
                }
            };
            match stop.next(l1) {
                Step::Go => e = e1,
                Step::Converged => {
                    e = e1;
                    break;
                }
                // On a cycle the previous state (still in e) may be the one
                // the cap would end on.
                Step::Cycle { take_new } => {
                    if take_new {
                        e = e1;
                    }
                    cycle = true;
                    break;
                }
            }
        }
        let iterations = stop.iterations;
        let iteration_seconds = t_iter.elapsed().as_secs_f64();
        let w = &v * &e;
        let zw = &z * &w;
        work.madds += (n * n * (w.ncols() + c)) as f64;
        let omega = DMatrix::from_fn(w.ncols(), FEATURES, |_, _| normal(&mut rng) / sigma);
        let b: Vec<f64> = (0..FEATURES)
            .map(|_| rng.random::<f64>() * std::f64::consts::TAU)
            .collect();
        let sil = silhouette(be, &zw, y, c)?;
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
            iteration_seconds,
            cycle,
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
    // ΦᵀΓΦ's top eigenvectors are −AᵀΓA's bottom ones. Φ's Gram matrix
    // serves both the basis and the HSIC of Φ.
    let g = gram(&z, n >= f);
    let (_, v, _, phi0) = basis(&z, &g, y, c, keep, c);
    let (e, _) = phi0.extreme(c);
    let w_out = &v * &e;
    let out = &z * &w_out;
    let centers = DMatrix::from_row_slice(
        c,
        out.ncols(),
        &super::metrics::class_means(&rows_of(&out), out.ncols(), y, c),
    );
    let train_acc = super::accuracy(&nearest(&out, &centers), y);
    let hsic = linear_hsic_from_gram(&z, &g, y, c);
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

/// ZᵀΓZ = ZᵀH Y Yᵀ H Z = SᵀS with S = Yᵀ H Z (C × d), the per-class sums
/// of Z's centred rows: O(n d + C d²), and Γ never formed.
pub fn gamma_gram(z: &DMatrix<f64>, y: &[u32], classes: usize) -> DMatrix<f64> {
    let (n, d) = z.shape();
    let mut s = DMatrix::<f64>::zeros(classes, d);
    for (j, col) in z.column_iter().enumerate() {
        let mean = col.sum() / n.max(1) as f64;
        for (&v, &c) in col.iter().zip(y) {
            s[(c as usize, j)] += v - mean;
        }
    }
    s.transpose() * &s
}

/// ISM's HSIC of the rows of Φ (linear kernel K = ΦΦᵀ, Y Yᵀ one-hot,
/// Hₗ = minus column means): Σ (HₗK) ∘ (Hₗ Y Yᵀ) / (‖HₗK‖_F ‖Hₗ Y Yᵀ‖_F), in
/// O(n F²) without K: with φ̄ the mean row, μ_j = φ_j·φ̄, s_c = Σ_{i∈c} φ_i,
/// n_c the class sizes and ν_j = n_{y_j}/n,
///   num = Σ_c ‖s_c‖² − n Σ_j ν_j μ_j,  ‖HₗK‖² = ‖ΦᵀΦ‖_F² − n Σ μ²,
///   ‖Hₗ Y Yᵀ‖² = Σ_c n_c² − Σ_c n_c³ / n.
pub fn linear_hsic(phi: &DMatrix<f64>, y: &[u32], classes: usize) -> f64 {
    let g = gram(phi, phi.nrows() >= phi.ncols());
    linear_hsic_from_gram(phi, &g, y, classes)
}

/// [`linear_hsic`] with Φ's Gram matrix `g` (ΦᵀΦ or ΦΦᵀ: only its
/// Frobenius norm is used, and the two have the same one) given.
fn linear_hsic_from_gram(phi: &DMatrix<f64>, g: &DMatrix<f64>, y: &[u32], classes: usize) -> f64 {
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
    let hk = g.norm_squared() - nf * mu.norm_squared();
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
                iteration_seconds: l.iteration_seconds,
                cycle: l.cycle,
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

    /// Predicted classes of new rows (nearest class mean), standardized as
    /// the fit's settings say.
    pub fn predict(&self, x: &[f64]) -> Vec<u32> {
        self.predict_with(x, super::Standardize::of(self.settings.test_own_stats))
    }

    /// Predicted classes of new rows standardized `how`.
    pub fn predict_with(&self, x: &[f64], how: super::Standardize) -> Vec<u32> {
        nearest(&(&self.last_layer(x, how) * &self.w_out), &self.centers)
    }

    /// The last layer's outputs of new rows standardized `how`: its width
    /// and the rows, item-major.
    pub fn transform_with(&self, x: &[f64], how: super::Standardize) -> (usize, Vec<f64>) {
        let z = self.last_layer(x, how);
        (z.ncols(), rows_of(&z))
    }

    fn last_layer(&self, x: &[f64], how: super::Standardize) -> DMatrix<f64> {
        let d = self.mean.len();
        let n = x.len() / d;
        let xs = how.apply(x, &self.mean, &self.std);
        let mut z = to_mat(&xs, n, d);
        for l in &self.layers {
            z = rff(&(&z * &l.w), &l.omega, &l.b);
        }
        z
    }
}

impl IsmModel {
    /// safetensors bytes: W, Ω, b per layer, the final projection and class
    /// centres as tensors; σ, iterations and settings as metadata.
    pub fn to_bytes(&self, label_values: &[i64]) -> Result<Vec<u8>> {
        use crate::io::{NamedTensor, safetensors_bytes};
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
        let bad =
            |m: &str| crate::error::Error::Input(format!("{what}: not an HSIC W* model ({m})"));
        let (tensors, meta) = crate::io::read_safetensors(bytes)?;
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
                iteration_seconds: r["iteration_seconds"].as_f64().unwrap_or(0.0),
                cycle: r["cycle"].as_bool().unwrap_or(false),
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

    /// Uniform draws on [−½, ½) from an xorshift generator.
    fn centered_uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    #[test]
    fn reduced_cosine_matches_std_within_two_ulps() {
        let mut worst: f64 = 0.0;
        let mut next = centered_uniform(3);
        for i in 0..200_000 {
            let u = next();
            // Small, medium and near-limit magnitudes, and the quadrant edges.
            let x = match i % 4 {
                0 => u * 8.0,
                1 => u * 2e3,
                2 => u * 1.5e6,
                _ => (i / 4) as f64 * std::f64::consts::FRAC_PI_4,
            };
            let mut v = [x];
            scaled_cos::<f64>(&mut v, 1.0);
            worst = worst.max((v[0] - x.cos()).abs());
        }
        assert!(worst <= 4.5e-16, "worst error {worst:e}");
        let mut special = [f64::NAN, 1e300, -0.0];
        scaled_cos::<f64>(&mut special, 2.0);
        assert!(special[0].is_nan());
        assert_eq!(special[1], 2.0 * 1e300f64.cos());
        assert_eq!(special[2], 2.0);
    }

    #[test]
    fn pivoted_basis_spans_the_rows_of_a_low_rank_matrix() {
        // Z = U Vᵀ of rank 7 (n = 90, d = 40), and its wide transpose.
        let mut next = centered_uniform(11);
        let u = DMatrix::from_fn(90, 7, |_, _| next());
        let w = DMatrix::from_fn(40, 7, |_, _| next());
        for z in [&u * w.transpose(), &w * u.transpose()] {
            let y = vec![0; z.nrows()];
            let (a, v, sv, _) = basis(&z, &gram(&z, z.nrows() >= z.ncols()), &y, 1, 0.0, 0);
            let a = a.expect("reduced");
            assert_eq!((sv.len(), a.ncols(), v.ncols()), (7, 7, 7));
            assert!((v.transpose() * &v - DMatrix::identity(7, 7)).amax() < 1e-12);
            assert!((&a * v.transpose() - &z).amax() < 1e-10 * z.amax());
            // The singular values: those of the full SVD.
            let full = z.clone().svd(false, false).singular_values;
            for (s, t) in sv.iter().zip(full.iter()) {
                assert!((s - t).abs() < 1e-9 * full[0], "{s} vs {t}");
            }
        }
    }

    #[test]
    fn f32_basis_drops_only_unresolvable_directions_and_keeps_the_width() {
        // Z = U S Vᵀ (n = 120, d = 30) with singular values 1 … 1e-7: ZᵀZ's
        // eigenvalue shares 1, 1e-2, 1e-4, 1e-6, 1e-10, 1e-14.
        let mut next = centered_uniform(5);
        let sing = [1.0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-7];
        let u = DMatrix::from_fn(120, 6, |_, _| next()).qr().q();
        let w = DMatrix::from_fn(30, 6, |_, _| next()).qr().q();
        let z =
            &u * DMatrix::from_diagonal(&nalgebra::DVector::from_row_slice(&sing)) * w.transpose();
        let y: Vec<u32> = (0..120).map(|i| (i % 2) as u32).collect();
        let (a, v, sv, _) = basis(
            &z,
            &gram(&z, z.nrows() >= z.ncols()),
            &y,
            2,
            F32_BASIS_CUTOFF,
            0,
        );
        let a = a.expect("reduced");
        // Four directions above 1e-8 of the top eigenvalue.
        assert_eq!((a.ncols(), v.ncols()), (4, 4));
        assert!((v.transpose() * &v - DMatrix::identity(4, 4)).amax() < 1e-12);
        assert!((&a * v.transpose() - &z).amax() < 1e-4);
        // The width rule sees the same count as on the exact values.
        let exact: Vec<f64> = sing[..5].to_vec();
        assert_eq!(width(&sv, 30, 2), width(&exact, 30, 2));
        // f64 keeps the whole numerical rank.
        let (a, _, sv, _) = basis(&z, &gram(&z, z.nrows() >= z.ncols()), &y, 2, RANK_CUTOFF, 0);
        let a = a.expect("reduced");
        assert_eq!((a.ncols(), sv.len()), (5, 5));
    }

    #[test]
    fn width_certainty_rejects_a_count_the_left_out_mass_could_change() {
        // Half of the total is reached clearly after the first value.
        assert!(width_is_certain(&[10.0, 1.0, 1.0, 1.0], 1e-12, 10, 1));
        // 5 + 5: the first partial sum sits exactly at half; any left-out
        // mass moves the count.
        assert!(!width_is_certain(&[5.0, 5.0], 1e-6, 10, 1));
        // Fewer values than the 2C floor: not decided here.
        assert!(!width_is_certain(&[1.0], 0.0, 0, 1));
    }

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

    fn settings(tol: f64, max_iter: usize, cycle_stop: bool) -> IsmSettings {
        IsmSettings {
            tol,
            max_iter,
            cycle_stop,
            ..Default::default()
        }
    }

    /// Runs the rule over `states` (eigenvalues per iteration, the first
    /// being the start); returns the stop and the index of the kept state.
    fn run_rule(s: &IsmSettings, states: &dyn Fn(usize) -> Vec<f64>) -> (Step, usize) {
        let mut stop = IterationStop::new(s, states(0));
        for t in 1..=s.max_iter {
            match stop.next(states(t)) {
                Step::Go => {}
                Step::Converged => return (Step::Converged, t),
                Step::Cycle { take_new } => {
                    return (Step::Cycle { take_new }, if take_new { t } else { t - 1 });
                }
            }
        }
        (Step::Go, s.max_iter)
    }

    #[test]
    fn a_two_cycle_stops_early_on_the_state_the_cap_ends_on() {
        // States alternate between two eigenvalue vectors, settling
        // geometrically onto them.
        let state = |t: usize| -> Vec<f64> {
            let base = if t.is_multiple_of(2) {
                [1.0, 2.0]
            } else {
                [10.0, 21.0]
            };
            base.iter()
                .map(|v| v * (1.0 + 0.5f64.powi(t as i32)))
                .collect()
        };
        for cap in [200, 201, 37] {
            let capped = run_rule(&settings(0.01, cap, false), &state);
            assert_eq!(capped, (Step::Go, cap), "no stop without the cycle test");
            let (step, kept) = run_rule(&settings(0.01, cap, true), &state);
            assert!(matches!(step, Step::Cycle { .. }), "cap {cap}: {step:?}");
            assert!(kept < 30, "cap {cap}: stopped only at {kept}");
            assert_eq!(kept % 2, cap % 2, "cap {cap}: the cap's state");
        }
    }

    #[test]
    fn a_two_cycle_blurred_by_rounding_stops_too() {
        // The f32 trace of a 10,000-item layer: a state 2,700 times the
        // other's norm, each repeating only to a few parts in 10⁴ of the
        // smaller norm, with the one-step changes near 100% and 270,000%.
        let state = |t: usize| -> Vec<f64> {
            let wobble = 1.0 + 5e-4 * ((t * 7919 % 13) as f64 / 13.0 - 0.5);
            let base = if t.is_multiple_of(2) {
                [2700.0, 5400.0]
            } else {
                [1.0, 2.0]
            };
            base.iter().map(|v| v * wobble).collect()
        };
        for cap in [200, 201] {
            assert_eq!(run_rule(&settings(0.01, cap, false), &state).0, Step::Go);
            let (step, kept) = run_rule(&settings(0.01, cap, true), &state);
            assert!(matches!(step, Step::Cycle { .. }), "cap {cap}: {step:?}");
            assert!(kept < 6, "cap {cap}: stopped only at {kept}");
            assert_eq!(kept % 2, cap % 2, "cap {cap}: the cap's state");
        }
        // A single bounce (out and back) that then settles converges.
        let bounce = |t: usize| -> Vec<f64> {
            match t {
                0 => vec![1.0, 2.0],
                1 => vec![10.0, 21.0],
                _ => vec![1.0001, 2.0002],
            }
        };
        assert_eq!(
            run_rule(&settings(0.01, 200, true), &bounce),
            (Step::Converged, 3)
        );
        // An alternation that dies out by 0.9 per iteration is no cycle:
        // it converges on the tolerance.
        let damped = |t: usize| vec![1.0 + (-0.9f64).powi(t as i32), 3.0];
        assert_eq!(
            run_rule(&settings(0.01, 200, true), &damped).0,
            Step::Converged
        );
    }

    #[test]
    fn converging_and_damped_sequences_stop_on_the_tolerance_not_as_cycles() {
        // Damped alternation (a layer converging by overshoots): the
        // two-step change is never far below the one-step one.
        let damped = |t: usize| vec![1.0 + (-0.8f64).powi(t as i32), 3.0];
        let (step, t) = run_rule(&settings(0.01, 200, true), &damped);
        assert_eq!(step, Step::Converged);
        assert_eq!(run_rule(&settings(0.01, 200, false), &damped), (step, t));
        // Monotone convergence.
        let mono = |t: usize| vec![2.0 + 0.5f64.powi(t as i32)];
        let (step, t) = run_rule(&settings(0.01, 200, true), &mono);
        assert_eq!(step, Step::Converged);
        let first = (1..)
            .find(|&k: &i32| 0.5f64.powi(k) / (2.0 + 0.5f64.powi(k - 1)) < 0.01)
            .unwrap();
        assert_eq!(t as i32, first, "the first iteration below the tolerance");
        // A zero start never counts as converged.
        let mut stop = IterationStop::new(&settings(0.01, 5, true), vec![0.0]);
        assert_eq!(stop.next(vec![0.0]), Step::Go);
    }

    #[test]
    fn auto_takes_lobpcg_only_where_products_are_cheaper() {
        use EigenSolver::*;
        // A 400-wide basis, 20 columns, 10⁴ items, the whole Ψ product per
        // dense iteration (the GPU): LOBPCG.
        assert!(Auto.lobpcg(10_000, 400, 20, false));
        assert!(Lobpcg.lobpcg(100, 400, 20, false));
        assert!(!Dense.lobpcg(10_000, 400, 20, false));
        // Raw features (basis 10 wide) or a wide block: dense.
        assert!(!Auto.lobpcg(10_000, 10, 20, false));
        assert!(!Auto.lobpcg(10_000, 400, 150, false));
        // Small sets: dense, the reference's rule.
        assert!(!Auto.lobpcg(AUTO_ITEMS - 1, 400, 20, false));
        // The break-even: 4.5 products at q = 20, 3.1 at q = 48 (LOBPCG),
        // under 2 from q = 110 on a 400-wide basis (dense).
        assert!((break_even_products(400, 20, false) - 487.0 / 109.0).abs() < 1e-12);
        assert!(Auto.lobpcg(10_000, 400, 48, false) && break_even_products(400, 48, false) > 3.1);
        assert!(Auto.lobpcg(10_000, 400, 109, false) && !Auto.lobpcg(10_000, 400, 110, false));
        // No room for the guard columns: dense whatever asked.
        assert!(!Lobpcg.lobpcg(10_000, 21, 20, false));
        // With the upper-half product (the CPU) a dense iteration costs half:
        // 2.2 products at q = 20, 1.6 at q = 48 (dense), under 2 from q = 28.
        assert!((break_even_products(400, 20, true) - 243.5 / 109.0).abs() < 1e-12);
        assert!(Auto.lobpcg(10_000, 400, 27, true) && !Auto.lobpcg(10_000, 400, 28, true));
        assert!(!Auto.lobpcg(10_000, 400, 48, true) && Lobpcg.lobpcg(10_000, 400, 48, true));
    }

    #[test]
    fn auto_goes_dense_once_its_solves_cost_more_than_dense_iterations() {
        use EigenSolver::*;
        // r = 400, q = 20: one dense iteration costs 4.47 LOBPCG products.
        let mut auto = LayerSolves::new(Auto, 400, 20, false);
        // A first solve never decides on cost, however dear.
        auto.record(6, true);
        assert!(!auto.dense_rest());
        // 6 + 3 over two solves: 4.5 a solve, just above the break-even.
        let mut edge = auto;
        edge.record(3, true);
        assert!(edge.dense_rest());
        // Cheap solves bring the average down and keep LOBPCG.
        auto.record(2, true);
        assert!(!auto.dense_rest(), "8 products over 2 solves");
        for _ in 0..8 {
            auto.record(3, true);
        }
        assert!(!auto.dense_rest(), "32 products over 10 solves");
        // A run of dear ones lifts it over: 32 + 3 · 9 = 59 > 4.47 · 13.
        for k in 0..3 {
            assert!(!auto.dense_rest(), "after {k} dear solves");
            auto.record(9, true);
        }
        assert!(auto.dense_rest());
        // Once dense, the layer stays dense.
        auto.record(1, true);
        assert!(auto.dense_rest());
        // Forced LOBPCG ignores the cost, not a failed solve.
        let mut forced = LayerSolves::new(Lobpcg, 400, 20, false);
        for _ in 0..20 {
            forced.record(30, true);
        }
        assert!(!forced.dense_rest());
        forced.record(30, false);
        assert!(forced.dense_rest());
        let mut failed = LayerSolves::new(Auto, 400, 20, false);
        failed.record(1, false);
        assert!(failed.dense_rest(), "a solve that did not converge");
    }
}
