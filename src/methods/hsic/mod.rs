//! Layer-wise HSIC networks with closed-form weights (Wu et al., AISTATS
//! 2022). This module holds the W_s solver (kernel mean embedding) and the
//! shared pieces; [`ism`] holds the ISM solver W*. W_s:
//!
//! ```text
//! layer l:  z_l[x, u] = Σ_{i ∈ S_u} k_σ(z_{l−1,i}, x) / ř_u,
//!           k_σ(a, b) = exp(−‖a − b‖² / 2σ²),   ř_u = √(1ᵀ K_{S_u S_u} 1)
//! units:    S_j = training rows of class j; from layer 2 on, one more unit
//!           (ř = 1) per class j holding its rows misclassified by argmax z
//! score:    H = Tr(Hₗ K_x Hₗ K_y)-style normalized HSIC of the reference:
//!           Σ (K_x − col. means)ᵀ ∘ (K_y − col. means) / (‖·‖_F ‖·‖_F),
//!           K_x = k_σ_b(z_l), K_y = Y Yᵀ
//! σ_b:      argmax_σ Σ_ij Γ_ij k_σ(z_i, z_j), Γ = H Y Yᵀ H (never stored:
//!           Γ_ij = [y_i = y_j] − p_{y_i} − p_{y_j} + ‖p‖², p = class freq.)
//! ```
//!
//! Layers are added while some width σ_a on the reference's descending
//! log-spaced range gives a higher H than the last layer (the first such σ
//! is taken), until H > 0.95 or the range runs out; prediction is 5-NN on
//! the last layer's outputs (HSIC_REFERENCE.md §2a). The n × n kernel
//! matrices come from the backend (GPU or CPU); the rest is O(n²) host work.
//!
//! Departures from the reference (all deterministic from `--seed`): exact
//! kernel sums instead of 200 random Fourier features for ř, and a seeded
//! subsample and jitter. New data are standardized with their own
//! statistics as in the reference unless `test_own_stats` is off (see
//! [`WsSettings::test_own_stats`] for why that is not the default).

pub mod eigen;
pub mod ism;
pub mod lobpcg;
pub mod metrics;
mod run;

pub use run::{Fitted, Solver, fit, run_cv, run_fit, run_predict};

use crate::data::labeled::Labeled;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::kernels::kernel_product::Spec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// W_s settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WsSettings {
    /// Smallest σ_a of the search range.
    pub smallest_sigma: f64,
    /// Points on the log-spaced σ_a range.
    pub sigma_steps: usize,
    /// Layer cap (the reference tries layers 1..29).
    pub max_layers: usize,
    /// Stop once H exceeds this.
    pub exit_h: f64,
    /// Training jitter: X += jitter · N(0, 1) before standardizing.
    pub jitter: f64,
    /// Rows sampled for the σ optimization.
    pub sigma_rows: usize,
    /// Standardize new data with their own statistics, as the reference
    /// does, instead of the training statistics. The default: on the
    /// adversarial set (test points that are near-copies of training points
    /// of the other class) training statistics lose 0.28 of accuracy, though
    /// they win on five of the other six sets (README results table).
    pub test_own_stats: bool,
    /// Seed for the jitter and the σ subsample.
    pub seed: u64,
}

impl WsSettings {
    /// The reference's settings for a data set name (thm1_simulation.py).
    pub fn for_dataset(name: &str) -> Self {
        let (smallest_sigma, sigma_steps) = match name {
            "adversarial" => (0.001, 20),
            "divorce" => (0.1, 40),
            _ => (0.05, 20),
        };
        WsSettings {
            smallest_sigma,
            sigma_steps,
            max_layers: 29,
            exit_h: 0.95,
            jitter: 0.02,
            sigma_rows: 200,
            test_own_stats: true,
            seed: 0,
        }
    }
}

impl WsSettings {
    /// Rejects settings no fit can use.
    pub fn check(&self) -> Result<()> {
        if !(self.smallest_sigma.is_finite() && self.smallest_sigma > 0.0) || self.sigma_steps == 0
        {
            return Err(Error::Input(format!(
                "W_s: the smallest σ must be > 0 and the σ steps ≥ 1, got {} and {}",
                self.smallest_sigma, self.sigma_steps
            )));
        }
        if self.max_layers == 0 || self.sigma_rows < 2 {
            return Err(Error::Input(format!(
                "W_s: at least one layer and two σ rows, got {} and {}",
                self.max_layers, self.sigma_rows
            )));
        }
        if !(self.jitter.is_finite() && self.jitter >= 0.0 && self.exit_h.is_finite()) {
            return Err(Error::Input(format!(
                "W_s: the jitter must be ≥ 0 and the exit H finite, got {} and {}",
                self.jitter, self.exit_h
            )));
        }
        Ok(())
    }
}

/// One unit of a layer: training rows and their normalizer ř.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Unit {
    /// Class the unit stands for.
    pub class: u32,
    /// Training rows summed.
    pub rows: Vec<usize>,
    /// ř (1 for misclassified-row units).
    pub norm: f64,
}

/// One accepted layer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct WsLayer {
    /// Kernel width σ_a of the layer.
    pub sigma: f64,
    /// Width σ_b of the score kernel.
    pub sigma_b: f64,
    /// Normalized HSIC of the output.
    pub hsic: f64,
    /// Units (output width = units.len()).
    pub units: Vec<Unit>,
    /// σ_a candidates tried before this one was accepted (including it).
    pub candidates: usize,
}

/// A fitted W_s network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WsModel {
    /// Per-feature mean and standard deviation of the (jittered) training data.
    pub mean: Vec<f64>,
    /// Standard deviations (1 where a feature is constant).
    pub std: Vec<f64>,
    /// Features d.
    pub dim: usize,
    /// Classes C.
    pub classes: usize,
    /// Layer inputs on the training rows: `inputs[l]` is what layer l reads.
    pub inputs: Vec<(usize, Vec<f64>)>,
    /// Layers.
    pub layers: Vec<WsLayer>,
    /// Output of the last layer on the training rows, and its width.
    pub output: (usize, Vec<f64>),
    /// Training labels.
    pub y: Vec<u32>,
    /// Settings used.
    pub settings: WsSettings,
}

/// Counts the multiply-adds of the dominant kernels (for GWMs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Work {
    /// Multiply-adds.
    pub madds: f64,
}

impl Work {
    /// GWMs.
    pub fn gwms(&self) -> f64 {
        self.madds * 1e-9
    }
}

/// Checks data for the HSIC solvers.
pub fn check(data: &Labeled, what: &str) -> Result<()> {
    if data.is_empty() || data.dim == 0 {
        return Err(Error::Input(format!("{what}: no data")));
    }
    if let Some(i) = data.x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{what}: row {} has a non-finite value",
            i / data.dim + 1
        )));
    }
    let mut seen = vec![false; data.classes.max(1)];
    for &c in &data.y {
        seen[c as usize] = true;
    }
    if seen.iter().filter(|&&s| s).count() < 2 {
        return Err(Error::Input(format!("{what}: needs at least two classes")));
    }
    Ok(())
}

pub(crate) fn standardize_stats(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut mean = vec![0.0; d];
    for r in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0.0; d];
    for r in x.chunks(d) {
        for c in 0..d {
            var[c] += (r[c] - mean[c]).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|v| {
            let s = (v / n as f64).sqrt();
            if s > 0.0 { s } else { 1.0 }
        })
        .collect();
    (mean, std)
}

/// How new rows are standardized before a trained network sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standardize {
    /// With the training data's mean and deviation: a row's prediction
    /// does not depend on the other rows given with it.
    Training,
    /// With the rows' own statistics, as the reference code does for its
    /// test folds (meaningful only for many rows).
    Own,
}

impl Standardize {
    /// The reference's choice when `own`, else the training statistics.
    pub fn of(own: bool) -> Self {
        if own {
            Standardize::Own
        } else {
            Standardize::Training
        }
    }

    /// The rows `x` (width = `mean.len()`) standardized.
    pub fn apply(self, x: &[f64], mean: &[f64], std: &[f64]) -> Vec<f64> {
        match self {
            Standardize::Own => {
                let (m, s) = standardize_stats(x, mean.len());
                apply_std(x, &m, &s)
            }
            Standardize::Training => apply_std(x, mean, std),
        }
    }
}

pub(crate) fn apply_std(x: &[f64], mean: &[f64], std: &[f64]) -> Vec<f64> {
    let d = mean.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean[i % d]) / std[i % d])
        .collect()
}

/// Class frequencies p.
pub(crate) fn freqs(y: &[u32], classes: usize) -> Vec<f64> {
    let mut p = vec![0.0; classes];
    for &c in y {
        p[c as usize] += 1.0;
    }
    p.iter_mut().for_each(|v| *v /= y.len() as f64);
    p
}

/// Γ_ij = [y_i = y_j] − p_{y_i} − p_{y_j} + ‖p‖² (the entries of H Y Yᵀ H).
pub fn gamma(yi: u32, yj: u32, p: &[f64], p2: f64) -> f64 {
    (yi == yj) as u32 as f64 - p[yi as usize] - p[yj as usize] + p2
}

fn sq_dists(z: &[f64], d: usize) -> Vec<f64> {
    sq_dists_at(crate::kernels::par::SimdLevel::current(), z, d)
}

crate::kernels::par::simd_dispatch! {
    /// [`sq_dists_body`] for a SIMD level.
    fn sq_dists_at<T>(z: &[T], d: usize) -> Vec<T> = sq_dists_body
}

/// The symmetric matrix of squared distances between the rows of z.
#[inline(always)]
fn sq_dists_body<T: crate::real::Real>(z: &[T], d: usize) -> Vec<T> {
    let n = z.len() / d;
    let mut out = vec![T::ZERO; n * n];
    for i in 0..n {
        for j in 0..i {
            let s = sq_dist(&z[i * d..(i + 1) * d], &z[j * d..(j + 1) * d]);
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

/// ‖a − b‖² in 8 interleaved partial sums (vectorizes; the 400-wide
/// feature layers made the serial sum a third of a small fit).
#[inline(always)]
fn sq_dist<T: crate::real::Real>(a: &[T], b: &[T]) -> T {
    let mut p = [T::ZERO; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            let t = x[l] - y[l];
            p[l] += t * t;
        }
    }
    let mut tail = T::ZERO;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += (x - y) * (x - y);
    }
    let mut sum = T::ZERO;
    for v in p {
        sum += v;
    }
    sum + tail
}

/// σ maximizing Σ Γ_ij exp(−D_ij²/2σ²) on up to `rows` sampled rows, by a
/// local search from the median pairwise distance (the reference's BFGS
/// start), then max(|σ|, `min_sigma`).
#[allow(clippy::too_many_arguments)]
pub fn opt_sigma(
    z: &[f64],
    d: usize,
    y: &[u32],
    classes: usize,
    rows: usize,
    min_sigma: f64,
    rng: &mut ChaCha8Rng,
    work: &mut Work,
) -> f64 {
    let idx = sample_rows(rng, y.len(), rows);
    opt_sigma_on(z, d, y, classes, &idx, min_sigma, work)
}

/// The rows [`opt_sigma`] optimizes on: all n, or `rows` drawn without
/// replacement (the only randomness of the σ search).
pub fn sample_rows(rng: &mut ChaCha8Rng, n: usize, rows: usize) -> Vec<usize> {
    if n > rows {
        rand::seq::index::sample(rng, n, rows).into_vec()
    } else {
        (0..n).collect()
    }
}

/// [`opt_sigma`] on the given rows.
pub fn opt_sigma_on(
    z: &[f64],
    d: usize,
    y: &[u32],
    classes: usize,
    idx: &[usize],
    min_sigma: f64,
    work: &mut Work,
) -> f64 {
    let zs: Vec<f64> = idx
        .iter()
        .flat_map(|&i| z[i * d..(i + 1) * d].to_vec())
        .collect();
    let ys: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
    let m = ys.len();
    let d2_full = sq_dists(&zs, d);
    work.madds += (m * m * d) as f64;
    let p = freqs(&ys, classes);
    let p2: f64 = p.iter().map(|v| v * v).sum();
    // Both matrices are symmetric: the pairs i < j count twice; the diagonal
    // (D = 0) adds the constant Σ Γ_ii, which moves no derivative.
    let (mut d2, mut g_) = (Vec::with_capacity(m * m / 2), Vec::with_capacity(m * m / 2));
    for i in 0..m {
        for j in i + 1..m {
            d2.push(d2_full[i * m + j]);
            g_.push(2.0 * gamma(ys[i], ys[j], &p, p2));
        }
    }
    // f(t), f'(t), f''(t) in t = ln σ: with a = D²/2σ², f = Σ Γ e^{−a},
    // f' = Σ Γ e^{−a} 2a, f'' = Σ Γ e^{−a} (4a² − 4a).
    let level = crate::kernels::par::SimdLevel::current();
    let eval = |t: f64| sigma_objective_at::<f64>(level, &d2, &g_, 0.5 * (-2.0 * t).exp());
    // Median of the full distance matrix, zeros included (as the reference).
    let mut dist = d2_full;
    let mid = dist.len() / 2;
    let mut s0 = dist
        .select_nth_unstable_by(mid, |a, b| a.total_cmp(b))
        .1
        .sqrt();
    if s0 <= 0.0 {
        s0 = d2.iter().copied().fold(0.0, f64::max).sqrt().max(1e-3);
    }
    // Safeguarded Newton ascent in ln σ from the median: a local maximum,
    // as the reference's BFGS from the same start finds.
    let mut t = s0.ln();
    let (mut f, mut g, mut h) = eval(t);
    for _ in 0..100 {
        work.madds += (m * m) as f64;
        let mut step = if h < 0.0 { -g / h } else { 0.5 * g.signum() };
        step = step.clamp(-1.0, 1.0);
        if step.abs() < 1e-7 || g == 0.0 {
            break;
        }
        if step.abs() < 1e-4 && h < 0.0 {
            // In Newton's quadratic basin: f cannot resolve the gain any more.
            t += step;
            (f, g, h) = eval(t);
            work.madds += (m * m) as f64;
            if step.abs() < 1e-8 {
                break;
            }
            continue;
        }
        let mut moved = false;
        for _ in 0..12 {
            let (f1, g1, h1) = eval(t + step);
            work.madds += (m * m) as f64;
            if f1 >= f - 1e-13 * f.abs() {
                t += step;
                (f, g, h) = (f1, g1, h1);
                moved = true;
                break;
            }
            step *= 0.5;
        }
        if !moved {
            break;
        }
    }
    t.exp().abs().max(min_sigma)
}

crate::kernels::par::simd_dispatch! {
    /// [`sigma_objective`] for a SIMD level.
    fn sigma_objective_at<T>(d2: &[T], w: &[T], inv: f64) -> (f64, f64, f64) = sigma_objective
}

/// f, f', f'' of Σ w e^{−a} in ln σ, a = d2 · inv (inv = 1/2σ²), in
/// interleaved partial sums so the loop vectorizes.
#[inline(always)]
fn sigma_objective<T: crate::real::Real>(d2: &[T], w: &[T], inv: f64) -> (f64, f64, f64) {
    const L: usize = 8;
    let (mut f, mut g, mut h) = ([0.0; L], [0.0; L], [0.0; L]);
    let body = d2.len() / L * L;
    for (dc, wc) in d2[..body].chunks_exact(L).zip(w[..body].chunks_exact(L)) {
        for l in 0..L {
            let a = dc[l].to_f64() * inv;
            let e = wc[l].to_f64() * crate::kernels::gauss_kernel::exp_neg(a);
            f[l] += e;
            g[l] += e * 2.0 * a;
            h[l] += e * (4.0 * a * a - 4.0 * a);
        }
    }
    for (i, (&dv, &wv)) in d2[body..].iter().zip(&w[body..]).enumerate() {
        let a = dv.to_f64() * inv;
        let e = wv.to_f64() * crate::kernels::gauss_kernel::exp_neg(a);
        f[i] += e;
        g[i] += e * 2.0 * a;
        h[i] += e * (4.0 * a * a - 4.0 * a);
    }
    (f.iter().sum(), g.iter().sum(), h.iter().sum())
}

/// The reference's normalized HSIC of outputs z (width w) at width σ.
pub fn hsic_score(
    be: &Backend,
    z: &[f64],
    w: usize,
    y: &[u32],
    classes: usize,
    sigma: f64,
    work: &mut Work,
) -> Result<f64> {
    let n = y.len();
    // With μ_j the column means of K (= row means: K is symmetric) and
    // R_i(c) = Σ_{j: y_j = c} K_ij (one kernel product with the one-hot labels),
    //   num = Σ_ij (K_ij − μ_j)([y_i = y_j] − p_{y_i})
    //       = Σ_i R_i(y_i) − Σ_i p_{y_i} n μ_i − Σ_j μ_j n p_{y_j} + (Σ μ)(Σ_i p_{y_i})
    //   ‖K − μ‖² = Σ K² − n Σ μ²,  ‖Y Yᵀ − col. means‖² = Σ_j n p_{y_j}(1 − p_{y_j}),
    // with Σ K² from the product's squares column.
    let spec = Spec {
        squares: true,
        ..Spec::gauss(sigma)
    };
    let out = be.kernel_product(z, z, w, &metrics::one_hot(y, classes), classes, &spec)?;
    work.madds += (n * n * w) as f64 + (n * n * (classes + 1)) as f64;
    let cw = classes + 1;
    let sq: f64 = out.chunks(cw).map(|row| row[classes]).sum();
    let p = freqs(y, classes);
    let nf = n as f64;
    let mut num = 0.0;
    let mut mu = vec![0.0; n];
    for i in 0..n {
        let row = &out[i * cw..i * cw + classes];
        num += row[y[i] as usize];
        mu[i] = row.iter().sum::<f64>() / nf;
    }
    let sum_mu: f64 = mu.iter().sum();
    let sum_py: f64 = y.iter().map(|&c| p[c as usize]).sum();
    for i in 0..n {
        num -= 2.0 * p[y[i] as usize] * nf * mu[i];
    }
    num += sum_mu * sum_py;
    let na = sq - nf * mu.iter().map(|v| v * v).sum::<f64>();
    let nb: f64 = y
        .iter()
        .map(|&c| nf * p[c as usize] * (1.0 - p[c as usize]))
        .sum();
    Ok(if na > 0.0 && nb > 0.0 {
        num / (na.sqrt() * nb.sqrt())
    } else {
        0.0
    })
}

/// Unit indicator matrix (n × U, row-major): `scale(u)` on the rows of unit u.
fn unit_matrix(units: &[(Vec<usize>, f64)], n: usize) -> Vec<f64> {
    let u = units.len();
    let mut m = vec![0.0; n * u];
    for (ui, (rows, scale)) in units.iter().enumerate() {
        for &i in rows {
            m[i * u + ui] = *scale;
        }
    }
    m
}

/// Output of a layer on query rows `q` (width `d`) from the training rows
/// `z`: one kernel product with the units' 1/ř-scaled indicators.
pub fn layer_output(
    be: &Backend,
    q: &[f64],
    z: &[f64],
    d: usize,
    layer: &WsLayer,
    work: &mut Work,
) -> Result<Vec<f64>> {
    let nq = q.len() / d;
    let n = z.len() / d;
    let u = layer.units.len();
    let units: Vec<(Vec<usize>, f64)> = layer
        .units
        .iter()
        .map(|unit| (unit.rows.clone(), 1.0 / unit.norm))
        .collect();
    let out = be.kernel_product(
        q,
        z,
        d,
        &unit_matrix(&units, n),
        u,
        &Spec::gauss(layer.sigma),
    )?;
    work.madds += (nq * n * d) as f64 + (nq * n * u) as f64;
    Ok(out)
}

fn logspace(from: f64, to: f64, steps: usize) -> Vec<f64> {
    if steps <= 1 {
        return vec![from];
    }
    let (a, b) = (from.log10(), to.log10());
    (0..steps)
        .map(|i| 10f64.powf(a + (b - a) * i as f64 / (steps - 1) as f64))
        .collect()
}

/// Per-layer report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    /// 1-based layer.
    pub layer: usize,
    /// σ_a.
    pub sigma: f64,
    /// σ_b.
    pub sigma_b: f64,
    /// Output width.
    pub width: usize,
    /// Normalized HSIC.
    pub hsic: f64,
    /// σ_a candidates evaluated.
    pub candidates: usize,
}

/// One σ_a candidate of a W_s layer: unit outputs, σ_b and H.
struct WsCandidate {
    out: Vec<f64>,
    units: Vec<Unit>,
    sigma_b: f64,
    h: f64,
}

/// Evaluates σ_a = `sa` on inputs z (width zw) for the unit groups (class,
/// rows, normalized); `idx` are the σ_b search's rows. Returns the
/// candidate and its multiply-adds.
#[allow(clippy::too_many_arguments)]
fn ws_candidate(
    be: &Backend,
    z: &[f64],
    zw: usize,
    groups: &[(u32, Vec<usize>, bool)],
    indicator: &[f64],
    y: &[u32],
    c: usize,
    sa: f64,
    idx: &[usize],
) -> Result<(WsCandidate, f64)> {
    let n = y.len();
    let u = groups.len();
    let mut work = Work::default();
    // P = K·S with S the unit indicators: ř_u² = Σ_{i ∈ S_u} P[i][u].
    let mut out = be.kernel_product(z, z, zw, indicator, u, &Spec::gauss(sa))?;
    work.madds += (n * n * zw) as f64 + (n * n * u) as f64;
    let units: Vec<Unit> = groups
        .iter()
        .enumerate()
        .map(|(ui, (j, rows, normed))| {
            let norm = if *normed {
                rows.iter().map(|&i| out[i * u + ui]).sum::<f64>().sqrt()
            } else {
                1.0
            };
            Unit {
                class: *j,
                rows: rows.clone(),
                norm: if norm > 0.0 { norm } else { 1.0 },
            }
        })
        .collect();
    for row in out.chunks_mut(u) {
        for (v, unit) in row.iter_mut().zip(&units) {
            *v /= unit.norm;
        }
    }
    let sigma_b = opt_sigma_on(&out, u, y, c, idx, 0.01, &mut work);
    let h = hsic_score(be, &out, u, y, c, sigma_b, &mut work)?;
    Ok((
        WsCandidate {
            out,
            units,
            sigma_b,
            h,
        },
        work.madds,
    ))
}

/// Fits W_s layers to training data.
pub fn fit_ws(be: &Backend, train: &Labeled, s: &WsSettings, work: &mut Work) -> Result<WsModel> {
    check(train, "training data")?;
    s.check()?;
    let d = train.dim;
    let n = train.len();
    let c = train.classes;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut x = train.x.clone();
    if s.jitter > 0.0 {
        for v in x.iter_mut() {
            *v += s.jitter * crate::random::normal(&mut rng);
        }
    }
    let (mean, std) = standardize_stats(&x, d);
    let x = apply_std(&x, &mean, &std);
    let y = &train.y;
    let sigma0 = opt_sigma(&x, d, y, c, s.sigma_rows, 0.1, &mut rng, work);
    let mut range = logspace(sigma0, s.smallest_sigma, s.sigma_steps);
    let mut h_prev = 0.1;
    let (mut zw, mut z) = (d, x.clone());
    let mut inputs = vec![];
    let mut layers: Vec<WsLayer> = vec![];
    while layers.len() < s.max_layers {
        crate::train::check_stop()?;
        // Units: per class; from layer 2 on, misclassified rows per class.
        let mut groups: Vec<(u32, Vec<usize>, bool)> = (0..c as u32)
            .map(|j| (j, (0..n).filter(|&i| y[i] == j).collect(), true))
            .filter(|g: &(u32, Vec<usize>, bool)| !g.1.is_empty())
            .collect();
        if zw != d {
            let unit_class: Vec<u32> = layers
                .last()
                .expect("a layer")
                .units
                .iter()
                .map(|u| u.class)
                .collect();
            for j in 0..c as u32 {
                let miss: Vec<usize> = (0..n)
                    .filter(|&i| {
                        let row = &z[i * zw..(i + 1) * zw];
                        let arg = (0..zw).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                        y[i] == j && unit_class[arg] != j
                    })
                    .collect();
                if !miss.is_empty() {
                    groups.push((j, miss, false));
                }
            }
        }
        let mut accepted: Option<(WsLayer, Vec<f64>, bool)> = None;
        let indicator: Vec<(Vec<usize>, f64)> = groups
            .iter()
            .map(|(_, rows, _)| (rows.clone(), 1.0))
            .collect();
        let indicator = unit_matrix(&indicator, n);
        // Candidates in order, the first whose H beats the last layer's is
        // taken. On the CPU backend, where one n² product is too small to
        // keep both cores busy, candidates run speculatively side by side;
        // their σ_b row samples are drawn in candidate order and the RNG is
        // rewound to just after the accepted one's, so results do not depend
        // on the thread count.
        let side_by_side = if be.gpu_context().is_none() {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let mut ci = 0;
        while ci < range.len() && accepted.is_none() {
            crate::train::check_stop()?;
            let batch: Vec<usize> = (ci..(ci + side_by_side).min(range.len())).collect();
            let draws: Vec<(Vec<usize>, ChaCha8Rng)> = batch
                .iter()
                .map(|_| (sample_rows(&mut rng, n, s.sigma_rows), rng.clone()))
                .collect();
            let eval = |(&i, (idx, _)): (&usize, &(Vec<usize>, ChaCha8Rng))| {
                ws_candidate(be, &z, zw, &groups, &indicator, y, c, range[i], idx)
            };
            let results: Vec<Result<(WsCandidate, f64)>> = if batch.len() > 1 {
                batch.par_iter().zip(&draws).map(eval).collect()
            } else {
                batch.iter().zip(&draws).map(eval).collect()
            };
            for (k, r) in results.into_iter().enumerate() {
                let (cand, madds) = r?;
                work.madds += madds;
                if cand.h > h_prev {
                    let i = batch[k];
                    rng = draws[k].1.clone();
                    accepted = Some((
                        WsLayer {
                            sigma: range[i],
                            sigma_b: cand.sigma_b,
                            hsic: cand.h,
                            units: cand.units,
                            candidates: i + 1,
                        },
                        cand.out,
                        i + 1 == range.len(),
                    ));
                    break;
                }
            }
            ci += batch.len();
        }
        let Some((layer, out, last)) = accepted else {
            break;
        };
        h_prev = layer.hsic;
        range = logspace(layer.sigma_b, s.smallest_sigma, s.sigma_steps);
        inputs.push((zw, std::mem::take(&mut z)));
        zw = layer.units.len();
        z = out;
        layers.push(layer);
        if last || h_prev > s.exit_h {
            break;
        }
    }
    Ok(WsModel {
        mean,
        std,
        dim: d,
        classes: c,
        inputs,
        layers,
        output: (zw, z),
        y: y.clone(),
        settings: s.clone(),
    })
}

impl WsModel {
    /// Per-layer reports.
    pub fn reports(&self) -> Vec<LayerReport> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerReport {
                layer: i + 1,
                sigma: l.sigma,
                sigma_b: l.sigma_b,
                width: l.units.len(),
                hsic: l.hsic,
                candidates: l.candidates,
            })
            .collect()
    }

    /// The reference's MSE, CE, C and T of the training output.
    pub fn metrics(&self, be: &Backend) -> Result<metrics::Metrics> {
        let (w, x) = (self.output.0, &self.output.1);
        let (y, c) = (&self.y, self.classes);
        let sigma = self.layers.last().map_or(1.0, |l| l.sigma_b);
        Ok(metrics::Metrics {
            mse: metrics::mse_ws(x, w, y, c),
            ce: metrics::cross_entropy(x, w, y, c),
            c: metrics::ratio_c_gauss(be, x, w, y, c, sigma)?,
            t: Some(metrics::ratio_t(be, x, w, y, c)?),
        })
    }

    /// Final H (the training output's score), or 0 without layers.
    pub fn hsic(&self) -> f64 {
        self.layers.last().map_or(0.0, |l| l.hsic)
    }

    /// Last-layer outputs of new rows, standardized as the fit's settings say.
    pub fn transform(&self, be: &Backend, x: &[f64], work: &mut Work) -> Result<(usize, Vec<f64>)> {
        self.transform_with(be, x, Standardize::of(self.settings.test_own_stats), work)
    }

    /// Last-layer outputs of new rows, standardized `how`.
    pub fn transform_with(
        &self,
        be: &Backend,
        x: &[f64],
        how: Standardize,
        work: &mut Work,
    ) -> Result<(usize, Vec<f64>)> {
        let mut z = how.apply(x, &self.mean, &self.std);
        let mut w = self.dim;
        for (layer, (iw, input)) in self.layers.iter().zip(&self.inputs) {
            z = layer_output(be, &z, input, *iw, layer, work)?;
            w = layer.units.len();
        }
        Ok((w, z))
    }

    /// Predicted classes of new rows (5-NN on the training outputs),
    /// standardized as the fit's settings say.
    pub fn predict(&self, be: &Backend, x: &[f64], work: &mut Work) -> Result<Vec<u32>> {
        let how = Standardize::of(self.settings.test_own_stats);
        self.predict_with(be, x, how, work)
    }

    /// Predicted classes of new rows standardized `how`.
    pub fn predict_with(
        &self,
        be: &Backend,
        x: &[f64],
        how: Standardize,
        work: &mut Work,
    ) -> Result<Vec<u32>> {
        if !x.len().is_multiple_of(self.dim) {
            return Err(Error::Input(format!(
                "rows must have {} features",
                self.dim
            )));
        }
        let (w, z) = self.transform_with(be, x, how, work)?;
        Ok(knn(&self.output.1, &self.y, &z, w, self.classes, 5))
    }
}

/// k-nearest-neighbour vote (Euclidean; ties in distance by index, ties in
/// votes to the smaller class, as scikit-learn's default).
pub fn knn(train: &[f64], y: &[u32], q: &[f64], w: usize, classes: usize, k: usize) -> Vec<u32> {
    let n = y.len();
    q.chunks(w.max(1))
        .map(|row| {
            let mut d: Vec<(f64, usize)> = (0..n)
                .map(|i| {
                    let s: f64 = (0..w).map(|c| (train[i * w + c] - row[c]).powi(2)).sum();
                    (s, i)
                })
                .collect();
            let kk = k.min(n);
            d.select_nth_unstable_by(kk.saturating_sub(1), |a, b| {
                a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
            });
            let mut votes = vec![0usize; classes];
            for &(_, i) in &d[..kk] {
                votes[y[i] as usize] += 1;
            }
            let best = *votes.iter().max().unwrap_or(&0);
            votes.iter().position(|&v| v == best).unwrap_or(0) as u32
        })
        .collect()
}

/// Fraction of equal entries.
pub fn accuracy(pred: &[u32], y: &[u32]) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

impl WsModel {
    /// safetensors bytes: arrays as tensors, layers and settings as metadata.
    pub fn to_bytes(&self, label_values: &[i64]) -> Result<Vec<u8>> {
        use crate::io::{NamedTensor, safetensors_bytes};
        let mut t = vec![
            NamedTensor {
                name: "mean".into(),
                shape: vec![self.dim],
                data: self.mean.clone(),
            },
            NamedTensor {
                name: "std".into(),
                shape: vec![self.dim],
                data: self.std.clone(),
            },
            NamedTensor {
                name: "output".into(),
                shape: vec![self.y.len(), self.output.0],
                data: self.output.1.clone(),
            },
            NamedTensor {
                name: "labels".into(),
                shape: vec![self.y.len()],
                data: self.y.iter().map(|&v| v as f64).collect(),
            },
        ];
        for (l, (w, z)) in self.inputs.iter().enumerate() {
            t.push(NamedTensor {
                name: format!("input{l}"),
                shape: vec![self.y.len(), *w],
                data: z.clone(),
            });
        }
        let meta = serde_json::json!({
            "method": "hsic ws", "dim": self.dim, "classes": self.classes,
            "label_values": label_values, "layers": self.layers, "settings": self.settings,
        });
        safetensors_bytes(&t, &meta)
    }

    /// Reads [`WsModel::to_bytes`]; returns the model and the label values.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<(WsModel, Vec<i64>)> {
        let bad = |m: &str| Error::Input(format!("{what}: not an HSIC W_s model ({m})"));
        let (tensors, meta) = crate::io::read_safetensors(bytes)?;
        if meta["method"] != "hsic ws" {
            return Err(bad("method"));
        }
        let get = |n: &str| tensors.get(n).ok_or_else(|| bad(n));
        let layers: Vec<WsLayer> =
            serde_json::from_value(meta["layers"].clone()).map_err(|e| bad(&e.to_string()))?;
        let settings: WsSettings =
            serde_json::from_value(meta["settings"].clone()).map_err(|e| bad(&e.to_string()))?;
        let values: Vec<i64> = serde_json::from_value(meta["label_values"].clone())
            .map_err(|e| bad(&e.to_string()))?;
        let out = get("output")?;
        let width = |t: &(Vec<usize>, Vec<f64>), n: &str| match t.0.as_slice() {
            [_, w] => Ok(*w),
            _ => Err(bad(n)),
        };
        let mut inputs = vec![];
        for l in 0..layers.len() {
            let name = format!("input{l}");
            let t = get(&name)?;
            inputs.push((width(t, &name)?, t.1.clone()));
        }
        let model = WsModel {
            mean: get("mean")?.1.clone(),
            std: get("std")?.1.clone(),
            dim: meta["dim"].as_u64().ok_or_else(|| bad("dim"))? as usize,
            classes: meta["classes"].as_u64().ok_or_else(|| bad("classes"))? as usize,
            inputs,
            layers,
            output: (width(out, "output")?, out.1.clone()),
            y: get("labels")?.1.iter().map(|&v| v as u32).collect(),
            settings,
        };
        model.check_saved(values.len()).map_err(|m| bad(&m))?;
        Ok((model, values))
    }

    /// What a saved model must satisfy before it predicts (a damaged or
    /// edited file would index out of its arrays): the reason it does not.
    fn check_saved(&self, label_values: usize) -> std::result::Result<(), String> {
        let n = self.y.len();
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if self.dim == 0 || self.mean.len() != self.dim || self.std.len() != self.dim {
            return Err(format!(
                "{} features, {} means, {} deviations",
                self.dim,
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.classes == 0 || self.classes != label_values || self.classes > n {
            return Err(format!(
                "{} classes, {label_values} label values, {n} training rows",
                self.classes
            ));
        }
        if let Some(&c) = self.y.iter().find(|&&c| c as usize >= self.classes) {
            return Err(format!("training label {c} of {} classes", self.classes));
        }
        if self.layers.is_empty() || self.inputs.len() != self.layers.len() {
            return Err(format!(
                "{} layers, {} layer inputs",
                self.layers.len(),
                self.inputs.len()
            ));
        }
        let mut reads = self.dim;
        for (l, (layer, (w, z))) in self.layers.iter().zip(&self.inputs).enumerate() {
            if *w != reads || z.len() != n * w || !finite(z) {
                return Err(format!(
                    "layer {l}'s input is not {n} finite rows of {reads}"
                ));
            }
            if layer.units.is_empty()
                || layer
                    .units
                    .iter()
                    .any(|u| u.rows.iter().any(|&r| r >= n) || !u.norm.is_finite())
                || !(layer.sigma.is_finite() && layer.sigma > 0.0)
            {
                return Err(format!("layer {l}'s units or σ"));
            }
            reads = layer.units.len();
        }
        let (w, out) = &self.output;
        if *w != reads
            || out.len() != n * w
            || !finite(out)
            || !finite(&self.mean)
            || !finite(&self.std)
        {
            return Err(format!("the output is not {n} finite rows of {reads}"));
        }
        Ok(())
    }
}

/// A saved HSIC network of either solver.
#[derive(Clone, Debug)]
pub enum SavedModel {
    /// W_s.
    Ws(WsModel),
    /// W*.
    Ism(ism::IsmModel),
}

impl SavedModel {
    /// Reads a model written by `hsic fit` (either solver); returns it and
    /// the original label values.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<(SavedModel, Vec<i64>)> {
        if let Ok((m, v)) = ism::IsmModel::from_bytes(bytes, what) {
            return Ok((SavedModel::Ism(m), v));
        }
        // Not W*: the W_s loader names what is wrong.
        let (m, v) = WsModel::from_bytes(bytes, what)?;
        Ok((SavedModel::Ws(m), v))
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        match self {
            SavedModel::Ws(m) => m.dim,
            SavedModel::Ism(m) => m.mean.len(),
        }
    }

    /// Predicted classes of new rows, standardized as the fit's settings say.
    pub fn predict(&self, be: &Backend, x: &[f64], work: &mut Work) -> Result<Vec<u32>> {
        match self {
            SavedModel::Ws(m) => m.predict(be, x, work),
            SavedModel::Ism(m) => Ok(m.predict(x)),
        }
    }

    /// Predicted classes of new rows standardized `how`.
    pub fn predict_with(
        &self,
        be: &Backend,
        x: &[f64],
        how: Standardize,
        work: &mut Work,
    ) -> Result<Vec<u32>> {
        self.check_rows(x)?;
        match self {
            SavedModel::Ws(m) => m.predict_with(be, x, how, work),
            SavedModel::Ism(m) => Ok(m.predict_with(x, how)),
        }
    }

    /// The last layer's outputs of new rows standardized `how`: its width
    /// and the rows, item-major.
    pub fn transform_with(
        &self,
        be: &Backend,
        x: &[f64],
        how: Standardize,
        work: &mut Work,
    ) -> Result<(usize, Vec<f64>)> {
        self.check_rows(x)?;
        match self {
            SavedModel::Ws(m) => m.transform_with(be, x, how, work),
            SavedModel::Ism(m) => Ok(m.transform_with(x, how)),
        }
    }

    fn check_rows(&self, x: &[f64]) -> Result<()> {
        let d = self.dim();
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(Error::Input(format!("rows must have {d} features")));
        }
        Ok(())
    }
}
