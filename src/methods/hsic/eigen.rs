//! A few extreme eigenpairs of a symmetric matrix, as LAPACK's
//! `dsyevx` gets them: Householder reduction to tridiagonal T = QᵀAQ,
//! implicit QL for T's eigenvalues, inverse
//! iteration for T's eigenvectors (re-orthogonalized within clusters), and
//! the reflectors applied to those vectors only. For the ISM solver's
//! q ≤ ~30 smallest of an r × r matrix (r ≤ 400) this skips the full
//! eigenvector matrix a complete decomposition accumulates.

use nalgebra::DMatrix;

use crate::kernels::par::{SimdLevel, simd_dispatch};
use crate::real::Real;

/// Tridiagonal form: diagonal, off-diagonal, and the Householder reflectors
/// (v_j over rows j+1.., τ_j) with A = H₀H₁⋯ T ⋯H₁H₀.
struct Tridiagonal {
    d: Vec<f64>,
    e: Vec<f64>,
    reflectors: Vec<(Vec<f64>, f64)>,
}

fn tridiagonalize(m: &DMatrix<f64>, negate: bool) -> Tridiagonal {
    let n = m.nrows();
    let sign = if negate { -1.0 } else { 1.0 };
    // Row-major full symmetric copy (symmetrized), in 32 × 32 tiles: row i
    // of the column-major storage is strided, and a tile's lines stay in
    // cache.
    let c = m.as_slice();
    let mut a = vec![0.0; n * n];
    for i0 in (0..n).step_by(32) {
        for j0 in (0..n).step_by(32) {
            for i in i0..(i0 + 32).min(n) {
                for j in j0..(j0 + 32).min(n) {
                    a[i * n + j] = sign * 0.5 * (c[j * n + i] + c[i * n + j]);
                }
            }
        }
    }
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n.saturating_sub(1)];
    let mut reflectors = Vec::with_capacity(n.saturating_sub(2));
    // Step j's reflector and p = τ S v, when the previous step's pass over
    // the trailing block already computed p (see below).
    let mut pending: Option<Reflector> = None;
    for j in 0..n.saturating_sub(2) {
        let len = n - j - 1;
        let s0 = j + 1;
        d[j] = a[j * n + j];
        let Some(Reflector { v, tau, alpha, p }) = pending
            .take()
            .or_else(|| reflector(&a[j * n + j + 1..(j + 1) * n]).map(|r| r.with_p(&a, n, s0)))
        else {
            e[j] = 0.0;
            reflectors.push((vec![0.0; len], 0.0));
            continue;
        };
        e[j] = alpha;
        // S ← H S H on the trailing block, H = I − τ v vᵀ:
        // w = p − (τ/2)(vᵀp) v, S −= v wᵀ + w vᵀ. Row s0 first: its tail is
        // the next step's column, so the next reflector is known before the
        // other rows are updated, and each of them is dotted with it (the
        // next p) right after its update, while it is in cache: one pass over
        // the block per step instead of two, with the same arithmetic.
        let k = 0.5 * tau * dot(&p, &v);
        let w: Vec<f64> = p.iter().zip(&v).map(|(pi, vi)| pi - k * vi).collect();
        let level = SimdLevel::current();
        let update = |r: usize, row: &mut [f64]| rank2_update_at(level, row, v[r], w[r], &v, &w);
        update(0, &mut a[s0 * n + s0..(s0 + 1) * n]);
        let next = if j + 1 < n - 2 {
            reflector(&a[s0 * n + s0 + 1..(s0 + 1) * n])
        } else {
            None
        };
        let rest = &mut a[(s0 + 1) * n..];
        let mut next_p = vec![0.0; len - 1];
        // The next reflector shifted to the updated row's columns (its
        // column s0 is the one the next step leaves out).
        let next_v: Vec<f64> = next.as_ref().map_or(vec![], |nx| {
            std::iter::once(0.0).chain(nx.v.iter().copied()).collect()
        });
        let row_pass = |(r, (row, pr)): (usize, (&mut [f64], &mut f64))| match &next {
            Some(nx) => {
                *pr = nx.tau
                    * update_dot_at(level, &mut row[s0..], v[r + 1], w[r + 1], &v, &w, &next_v);
            }
            None => update(r + 1, &mut row[s0..]),
        };
        if len * len >= PARALLEL_BLOCK {
            use rayon::prelude::*;
            rest.par_chunks_mut(n)
                .zip(next_p.par_iter_mut())
                .enumerate()
                .with_min_len(16)
                .for_each(row_pass);
        } else {
            rest.chunks_mut(n)
                .zip(next_p.iter_mut())
                .enumerate()
                .for_each(row_pass);
        }
        pending = next.map(|nx| Reflector { p: next_p, ..nx });
        reflectors.push((v, tau));
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 1) * n + n - 2];
    }
    if n >= 1 {
        d[n - 1] = a[(n - 1) * n + n - 1];
    }
    Tridiagonal { d, e, reflectors }
}

simd_dispatch! {
    /// [`rank2_update`] for a SIMD level (same arithmetic, wider lanes).
    fn rank2_update_at<T>(row: &mut [T], vr: T, wr: T, v: &[T], w: &[T]) -> () = rank2_update
}

simd_dispatch! {
    /// [`update_dot`] for a SIMD level.
    fn update_dot_at<T>(row: &mut [T], vr: T, wr: T, v: &[T], w: &[T], u: &[T]) -> T = update_dot
}

/// [`rank2_update`] of `row`, then its dot product with `u`, in one pass
/// ([`LANES_DOT`] partial sums, added by [`sum_lanes`]).
#[inline(always)]
fn update_dot<T: Real>(row: &mut [T], vr: T, wr: T, v: &[T], w: &[T], u: &[T]) -> T {
    let mut p = [T::ZERO; LANES_DOT];
    let n = row.len().min(v.len()).min(w.len()).min(u.len());
    let body = n / LANES_DOT * LANES_DOT;
    let (row, v, w, u) = (&mut row[..n], &v[..n], &w[..n], &u[..n]);
    for (((x, vc), wc), uc) in row[..body]
        .chunks_exact_mut(LANES_DOT)
        .zip(v.chunks_exact(LANES_DOT))
        .zip(w.chunks_exact(LANES_DOT))
        .zip(u.chunks_exact(LANES_DOT))
    {
        for l in 0..LANES_DOT {
            x[l] = (-vr).mul_add(wc[l], (-wr).mul_add(vc[l], x[l]));
            p[l] = x[l].mul_add(uc[l], p[l]);
        }
    }
    // Then blocks of 8 into the first lanes, then single entries.
    let mid = n / 8 * 8;
    for c0 in (body..mid).step_by(8) {
        for (l, pl) in p[..8].iter_mut().enumerate() {
            let c = c0 + l;
            row[c] = (-vr).mul_add(w[c], (-wr).mul_add(v[c], row[c]));
            *pl = row[c].mul_add(u[c], *pl);
        }
    }
    let mut tail = T::ZERO;
    for c in mid..n {
        row[c] = (-vr).mul_add(w[c], (-wr).mul_add(v[c], row[c]));
        tail = row[c].mul_add(u[c], tail);
    }
    sum_lanes(p) + tail
}

simd_dispatch! {
    /// [`reflect`] for a SIMD level.
    fn reflect_at<T>(x: &mut [T], v: &[T], tau: T) -> () = reflect
}

/// x ← (I − τ v vᵀ) x.
#[inline(always)]
fn reflect<T: Real>(x: &mut [T], v: &[T], tau: T) {
    let s = tau * dot_lanes(v, x);
    x.iter_mut().zip(v).for_each(|(xi, &vi)| *xi -= s * vi);
}

/// row −= vr wᵀ + wr vᵀ: one row of the two-sided reflector update.
#[inline(always)]
fn rank2_update<T: Real>(row: &mut [T], vr: T, wr: T, v: &[T], w: &[T]) {
    for ((x, &vc), &wc) in row.iter_mut().zip(v).zip(w) {
        *x = (-vr).mul_add(wc, (-wr).mul_add(vc, *x));
    }
}

/// Dot product in 8 interleaved partial sums, added in order, then the tail.
#[inline(always)]
fn dot_lanes<T: Real>(a: &[T], b: &[T]) -> T {
    let mut p = [T::ZERO; 8];
    let body = a.len() / 8 * 8;
    for (ac, bc) in a[..body].chunks_exact(8).zip(b[..body].chunks_exact(8)) {
        for l in 0..8 {
            p[l] += ac[l] * bc[l];
        }
    }
    let mut tail = T::ZERO;
    for (x, y) in a[body..].iter().zip(&b[body..]) {
        tail += *x * *y;
    }
    let mut sum = T::ZERO;
    for v in p {
        sum += v;
    }
    sum + tail
}

/// Partial sums of [`update_dot`]: four vector chains of 8 f64 (one chain
/// would wait on the add latency).
const LANES_DOT: usize = 32;

/// The partial sums added as four vectors of 8, then across the 8.
#[inline(always)]
fn sum_lanes<T: Real>(p: [T; LANES_DOT]) -> T {
    let mut q = [T::ZERO; 8];
    for l in 0..8 {
        q[l] = (p[l] + p[l + 8]) + (p[l + 16] + p[l + 24]);
    }
    let mut sum = T::ZERO;
    for v in q {
        sum += v;
    }
    sum
}

/// Back-transforms of at least this many multiply-adds (n² per vector) run
/// one vector per task.
const PARALLEL_BACK: usize = 1 << 18;

/// Trailing blocks of at least this many entries update in parallel rows.
const PARALLEL_BLOCK: usize = 128 * 128;

/// A Householder reflector H = I − τ v vᵀ taking x to (α, 0, …), and
/// p = τ S v for the trailing block S it applies to.
struct Reflector {
    v: Vec<f64>,
    tau: f64,
    alpha: f64,
    p: Vec<f64>,
}

/// The reflector of column tail x, or None when x = 0.
fn reflector(x: &[f64]) -> Option<Reflector> {
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 {
        return None;
    }
    let alpha = if x[0] > 0.0 { -norm } else { norm };
    let mut v = x.to_vec();
    v[0] -= alpha;
    let tau = 2.0 / v.iter().map(|t| t * t).sum::<f64>();
    Some(Reflector {
        v,
        tau,
        alpha,
        p: vec![],
    })
}

impl Reflector {
    /// Sets p = τ S v for the trailing block of `a` (n × n) from row and
    /// column s0.
    fn with_p(mut self, a: &[f64], n: usize, s0: usize) -> Self {
        self.p = (0..self.v.len())
            .map(|r| self.tau * dot(&a[(s0 + r) * n + s0..(s0 + r + 1) * n], &self.v))
            .collect();
        self
    }
}

/// Dot product in 8 interleaved partial sums ([`dot_lanes`] without the
/// SIMD dispatch). Kept apart from `kernels::par::dot`: its different
/// summation order is what the results tables were measured with.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_lanes(a, b)
}

/// The k smallest eigenvalues of T, ascending, by bisection on Sturm
/// counts: [`LANES`] eigenvalues in lock-step, so the count's division
/// chain runs in vector lanes (QL finds all n values one rotation at a
/// time, a serial chain of square roots and divisions, when the ISM solver
/// wants some 6–20 of up to 400). A fixed 62 halvings of T's Gershgorin
/// interval (at most 4‖T‖ wide) leave each value within 2⁻⁶⁰‖T‖.
fn smallest_values(t: &Tridiagonal, k: usize) -> Vec<f64> {
    let n = t.d.len();
    let e2: Vec<f64> = t.e.iter().map(|v| v * v).collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..n {
        let r =
            if i > 0 { t.e[i - 1].abs() } else { 0.0 } + if i + 1 < n { t.e[i].abs() } else { 0.0 };
        lo = lo.min(t.d[i] - r);
        hi = hi.max(t.d[i] + r);
    }
    // A pivot of exactly 0 is replaced by this (LAPACK's pivmin idea).
    let norm = lo.abs().max(hi.abs());
    let pivmin = f64::MIN_POSITIVE.max(norm * f64::EPSILON * f64::EPSILON);
    let level = crate::kernels::par::SimdLevel::current();
    // Lane j of a group seeks the value with index first + j (0-based,
    // ascending).
    let group = |first: usize| -> Vec<f64> {
        let mut l = [lo; LANES];
        let mut h = [hi; LANES];
        let mut want = [0.0; LANES];
        for (j, w) in want.iter_mut().enumerate() {
            *w = (first + j) as f64 + 0.5;
        }
        for _ in 0..62 {
            let mut mid = [0.0; LANES];
            for j in 0..LANES {
                mid[j] = 0.5 * (l[j] + h[j]);
            }
            let below = sturm_at::<f64>(level, &t.d, &e2, &mid, pivmin);
            for j in 0..LANES {
                // count(mid) > index: the value lies below mid.
                if below[j] > want[j] {
                    h[j] = mid[j];
                } else {
                    l[j] = mid[j];
                }
            }
        }
        (0..LANES.min(k - first))
            .map(|j| 0.5 * (l[j] + h[j]))
            .collect()
    };
    let firsts: Vec<usize> = (0..k).step_by(LANES).collect();
    let groups: Vec<Vec<f64>> = if firsts.len() > 1 && n >= 128 {
        use rayon::prelude::*;
        firsts.into_par_iter().map(group).collect()
    } else {
        firsts.into_iter().map(group).collect()
    };
    groups.concat()
}

/// Eigenvalues bisected together.
const LANES: usize = 16;

crate::kernels::par::simd_dispatch! {
    /// [`sturm`] for a SIMD level.
    fn sturm_at<T>(d: &[T], e2: &[T], x: &[T; LANES], pivmin: T) -> [T; LANES] = sturm
}

/// For each lane, the number of T's eigenvalues below x (the negative
/// pivots of T − x I = L D Lᵀ), as a float.
#[inline(always)]
fn sturm<T: Real>(d: &[T], e2: &[T], x: &[T; LANES], pivmin: T) -> [T; LANES] {
    let mut count = [T::ZERO; LANES];
    let mut q = [T::ZERO; LANES];
    for (i, &di) in d.iter().enumerate() {
        let e = if i > 0 { e2[i - 1] } else { T::ZERO };
        for j in 0..LANES {
            let prev = if i > 0 { q[j] } else { T::ONE };
            let mut v = (di - x[j]) - e / prev;
            // |v| < pivmin → −pivmin (branch-free, as dstebz).
            if v.abs() < pivmin {
                v = T::ZERO - pivmin;
            }
            q[j] = v;
            if v < T::ZERO {
                count[j] += T::ONE;
            }
        }
    }
    count
}

/// All eigenvalues of T (unsorted) by the implicit QL method with Wilkinson
/// shifts, without vectors: O(n²), where bisection for all n would be O(n²)
/// serial divisions per value.
fn ql_values(t: &Tridiagonal) -> Vec<f64> {
    let n = t.d.len();
    let mut d = t.d.clone();
    let mut e = t.e.clone();
    e.push(0.0);
    for l in 0..n {
        for _ in 0..60 {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = (g * g + 1.0).sqrt();
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = (f * f + g * g).sqrt();
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    d
}

/// Solves (T − λI) y = b by Gaussian elimination with partial pivoting
/// (LAPACK `dlagtf`/`dlagts` style), zero pivots replaced by `tiny`.
fn solve_shifted(t: &Tridiagonal, lambda: f64, b: &mut [f64], tiny: f64) {
    let n = t.d.len();
    if n == 1 {
        let p = t.d[0] - lambda;
        b[0] /= if p.abs() < tiny { tiny } else { p };
        return;
    }
    // Row i of U: u0 (diagonal), u1, u2 (superdiagonals).
    let (mut u0, mut u1, mut u2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut cur = [t.d[0] - lambda, t.e[0], 0.0];
    for i in 0..n - 1 {
        let below = [
            t.e[i],
            t.d[i + 1] - lambda,
            if i + 2 < n { t.e[i + 1] } else { 0.0 },
        ];
        let (mut top, mut bot) = (cur, below);
        if below[0].abs() > cur[0].abs() {
            std::mem::swap(&mut top, &mut bot);
            b.swap(i, i + 1);
        }
        let piv = if top[0].abs() < tiny {
            tiny.copysign(top[0])
        } else {
            top[0]
        };
        let l = bot[0] / piv;
        u0[i] = piv;
        u1[i] = top[1];
        u2[i] = top[2];
        b[i + 1] -= l * b[i];
        cur = [bot[1] - l * top[1], bot[2] - l * top[2], 0.0];
    }
    u0[n - 1] = if cur[0].abs() < tiny {
        tiny.copysign(cur[0])
    } else {
        cur[0]
    };
    for i in (0..n).rev() {
        let mut s = b[i];
        if i + 1 < n {
            s -= u1[i] * b[i + 1];
        }
        if i + 2 < n {
            s -= u2[i] * b[i + 2];
        }
        b[i] = s / u0[i];
    }
}

/// The k smallest (or, with `largest`, the k largest) eigenpairs of the
/// symmetric part of `m`: eigenvectors as columns (n × k) and eigenvalues,
/// ascending (descending for `largest`).
pub fn extreme_eigenpairs(m: &DMatrix<f64>, k: usize, largest: bool) -> (DMatrix<f64>, Vec<f64>) {
    let n = m.nrows();
    if k.min(n) == 0 {
        return (DMatrix::zeros(n, 0), vec![]);
    }
    reduce(m, largest).extreme(k)
}

/// A symmetric matrix in tridiagonal form, from which [`Reduced::extreme`]
/// takes the extreme eigenpairs: the O(n³) half of
/// [`extreme_eigenpairs`], for a caller that learns k only later.
pub struct Reduced {
    t: Tridiagonal,
    largest: bool,
}

/// Reduces the symmetric part of `m` for its smallest (or `largest`)
/// eigenpairs.
pub fn reduce(m: &DMatrix<f64>, largest: bool) -> Reduced {
    // The k largest of A are the k smallest of −A.
    Reduced {
        t: tridiagonalize(m, largest),
        largest,
    }
}

impl Reduced {
    /// The k extreme eigenpairs, as [`extreme_eigenpairs`] returns them.
    pub fn extreme(&self, k: usize) -> (DMatrix<f64>, Vec<f64>) {
        let n = self.t.d.len();
        let k = k.min(n);
        if k == 0 {
            return (DMatrix::zeros(n, 0), vec![]);
        }
        let values = if 2 * k < n {
            smallest_values(&self.t, k)
        } else {
            let mut all = ql_values(&self.t);
            all.sort_by(|a, b| a.total_cmp(b));
            all.truncate(k);
            all
        };
        let out = smallest_vectors(&self.t, &values);
        let values = if self.largest {
            values.iter().map(|v| -v).collect()
        } else {
            values
        };
        (out, values)
    }
}

/// Every eigenvalue of the symmetric part of `m`, descending, and the
/// eigenvectors (columns) of the `count(values)` largest, from one
/// tridiagonal form: what [`eigenvalues_desc`] followed by
/// [`extreme_eigenpairs`] with `largest` would compute, without reducing
/// the matrix twice.
pub fn top_eigenpairs_by(
    m: &DMatrix<f64>,
    count: impl FnOnce(&[f64]) -> usize,
) -> (DMatrix<f64>, Vec<f64>) {
    let n = m.nrows();
    if n == 0 {
        count(&[]);
        return (DMatrix::zeros(0, 0), vec![]);
    }
    let t = tridiagonalize(m, true);
    let mut smallest_of_negated = ql_values(&t);
    smallest_of_negated.sort_by(|a, b| a.total_cmp(b));
    let desc: Vec<f64> = smallest_of_negated.iter().map(|v| -v).collect();
    let k = count(&desc).min(n);
    let vectors = if k == 0 {
        DMatrix::zeros(n, 0)
    } else {
        smallest_vectors(&t, &smallest_of_negated[..k])
    };
    (vectors, desc)
}

/// Eigenvectors of the tridiagonalized matrix for its eigenvalues `values`
/// (ascending, the smallest ones), in the original basis.
fn smallest_vectors(t: &Tridiagonal, values: &[f64]) -> DMatrix<f64> {
    let n = t.d.len();
    let k = values.len();
    let norm =
        t.d.iter()
            .enumerate()
            .map(|(i, d)| {
                d.abs()
                    + if i > 0 { t.e[i - 1].abs() } else { 0.0 }
                    + if i < n - 1 { t.e[i].abs() } else { 0.0 }
            })
            .fold(0.0, f64::max);
    if norm == 0.0 {
        // A = 0 (e.g. a kernel whose width underflows every off-diagonal
        // value): every vector is an eigenvector, and the shifted solves
        // below would divide by zero.
        return DMatrix::identity(n, k);
    }
    let eps = f64::EPSILON;
    // Inverse iteration; vectors of eigenvalues closer than 10⁻³‖T‖ (a
    // cluster) are kept orthogonal to each other by Gram–Schmidt.
    let ortol = 1e-3 * norm;
    let tiny = eps * norm;
    let mut vecs: Vec<Vec<f64>> = Vec::with_capacity(k);
    let mut cluster_start = 0;
    for (j, &lambda) in values.iter().enumerate() {
        if j > 0 && lambda - values[j - 1] > ortol {
            cluster_start = j;
        }
        // A fixed pseudo-random start, different for every j.
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (j as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut y: Vec<f64> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        for _ in 0..4 {
            solve_shifted(t, lambda, &mut y, tiny);
            for prev in &vecs[cluster_start..j] {
                let s = dot(&y, prev);
                y.iter_mut().zip(prev).for_each(|(a, b)| *a -= s * b);
            }
            let nrm = dot(&y, &y).sqrt();
            if nrm > 0.0 {
                y.iter_mut().for_each(|v| *v /= nrm);
            }
        }
        vecs.push(y);
    }
    // Back to A's basis: u = H₀(H₁(⋯ y)), each vector on its own.
    let level = SimdLevel::current();
    let mut out = DMatrix::zeros(n, k);
    let back = |(col, y): (&mut [f64], &Vec<f64>)| {
        col.copy_from_slice(y);
        for (j, (v, tau)) in t.reflectors.iter().enumerate().rev() {
            reflect_at(level, &mut col[j + 1..], v, *tau);
        }
    };
    if n * n * k >= PARALLEL_BACK {
        use rayon::prelude::*;
        out.as_mut_slice()
            .par_chunks_mut(n)
            .zip(&vecs)
            .for_each(back);
    } else {
        out.as_mut_slice().chunks_mut(n).zip(&vecs).for_each(back);
    }
    out
}

/// All eigenvalues of the symmetric part of `m`, descending (QL on the
/// tridiagonal form; no vectors).
pub fn eigenvalues_desc(m: &DMatrix<f64>) -> Vec<f64> {
    if m.nrows() == 0 {
        return vec![];
    }
    let mut v = ql_values(&tridiagonalize(m, false));
    v.sort_by(|a, b| b.total_cmp(a));
    v
}
