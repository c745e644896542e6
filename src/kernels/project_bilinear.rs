//! Bilinear projection (paper appendix B): project `(x, w, y)` onto
//! `x·w = Ω y` in the metric `|dx|² + |dw|² + g dy²`.
//!
//! Stationarity gives `x' = (x + u w)/(1 − u²)`, `w' = (w + u x)/(1 − u²)`,
//! `y' = y − Ω u / g`, with `u ∈ (−1, 1)` the unique root of
//!
//! ```text
//! h(u) = A/(1−u)² − B/(1+u)² + c u − t,   A = |x+w|²/4, B = |x−w|²/4,
//!                                          c = Ω²/g,     t = Ω y
//! ```
//!
//! (the same function as the paper's `(p(1+u²)+qu)/(1−u²)² + (Ω²/g)u − Ωy`,
//! written without the cancellation of `p(1+u²)+qu` near `x ≈ ±w`). The NMF
//! form (y fixed by data) is `Ω = 1`, `c = 0`.
//!
//! Solver (identical in Rust and WGSL): the sign of `h(0)` says on which
//! side the root lies; the sign at `|u| = 1/2` says whether to solve for
//! `|u|` itself (small roots keep full relative precision, so `y' − y` is
//! exact to the last digits) or for `s = 1 − |u|` (roots near ±1 keep full
//! relative precision in `1 − |u|`, which f32 otherwise cannot resolve below
//! 6e-8). Newton inside a bracket, bisecting whenever Newton leaves it. `A` (or `B`)
//! equal to zero with no sign change means no root in (−1, 1): the case is
//! reported as [`STATUS_DEGENERATE`] and the point is returned unchanged —
//! never silent noise as the reference C code returns.
//!
//! Outputs use `x + u w` when `|u| ≤ 1/2` and `(x ± w) − s w` when `|u| > 1/2`
//! so that neither regime loses digits.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// The WGSL kernel: one invocation per problem of a [`BilinearBatch`].
pub const KERNEL: Kernel = Kernel {
    name: "project_bilinear",
    source: include_str!("../../shaders/project_bilinear.wgsl"),
    deps: &[],
    entry: "project_bilinear",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `BilinearParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Number of problems.
    pub problems: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// The projection converged.
pub const STATUS_OK: u32 = 0;
/// No root in (−1, 1): the constraint set has no nearest stationary point
/// (x = ±w exactly with an unattainable target, or x = w = 0).
pub const STATUS_DEGENERATE: u32 = 1;
/// Newton/bisection hit the iteration cap; the last iterate is used.
pub const STATUS_NOT_CONVERGED: u32 = 2;

/// Iteration cap of the root finder (bisection alone needs ~60 in f64 for s near 1e-18).
pub const MAX_ITER: u32 = 200;

/// Root of the bilinear secular equation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Root<T> {
    /// |u|, accurate relative to itself when |u| ≤ 1/2.
    pub ua: T,
    /// 1 − |u|, accurate relative to itself when |u| > 1/2.
    pub s: T,
    /// 1/(1 − u²), computed once so applying the root multiplies.
    pub inv_den: T,
    /// True if u ≥ 0.
    pub positive: bool,
    /// One of the STATUS_* codes.
    pub status: u32,
    /// Newton/bisection iterations used.
    pub iterations: u32,
}

impl<T: Real> Root<T> {
    /// u = 0: the point is already on the set.
    pub const IDENTITY: Self = Root {
        ua: T::ZERO,
        s: T::ONE,
        inv_den: T::ONE,
        positive: true,
        status: STATUS_OK,
        iterations: 0,
    };

    /// The multiplier u.
    pub fn u(&self) -> T {
        if self.positive { self.ua } else { -self.ua }
    }
}

/// Solves `h(u) = 0` given `sp = |x+w|²`, `sm = |x−w|²`, `c = Ω²/g` and `t = Ω y`.
///
/// After mirroring to the side of the root, with `v = |u|`:
/// `G(v) = a/(1−v)² − b/(1+v)² + c v − tt`, increasing, `G(0) < 0`.
/// If `G(1/2) ≥ 0` the root is found in `v ∈ (0, 1/2]` (full relative
/// precision in u), otherwise in `s = 1 − v ∈ (0, 1/2)` (full relative
/// precision in 1 − |u|).
pub fn solve_root<T: Real>(sp: T, sm: T, c: T, t: T) -> Root<T> {
    match RootSearch::start(sp, sm, c, t) {
        Ok(root) => root,
        Err(mut search) => {
            while !search.step() {}
            search.finish()
        }
    }
}

/// Solves up to [`ROOT_BLOCK`] independent problems `(sp, sm, c, t)`
/// ([`solve_block`] with one [`Root`] per problem). Without `warm` the
/// results are bit-identical to [`solve_root`]; with `warm` (one slot per
/// problem, kept between calls) each search starts from the previous
/// call's root when it lies on the same side and in the same regime, and
/// the new root is stored back.
pub fn solve_roots<T: Real>(
    inputs: &[(T, T, T, T)],
    warm: Option<&mut [WarmRoot<T>]>,
    out: &mut [Root<T>],
) {
    let n = inputs.len();
    assert!(n <= ROOT_BLOCK && out.len() >= n);
    let mut sp = [T::ZERO; ROOT_BLOCK];
    let mut sm = [T::ZERO; ROOT_BLOCK];
    let mut c = [T::ZERO; ROOT_BLOCK];
    let mut t = [T::ZERO; ROOT_BLOCK];
    for (k, &(a, b, cc, tt)) in inputs.iter().enumerate() {
        (sp[k], sm[k], c[k], t[k]) = (a, b, cc, tt);
    }
    let block = solve_block(n, &sp, &sm, &c, &t, warm);
    for (k, o) in out[..n].iter_mut().enumerate() {
        *o = block.root(k);
    }
}

/// The roots of a block, one array per field (see [`Root`]).
#[derive(Clone, Copy, Debug)]
pub struct RootBlock<T> {
    /// |u|.
    pub ua: [T; ROOT_BLOCK],
    /// 1 − |u|.
    pub s: [T; ROOT_BLOCK],
    /// 1/(1 − u²).
    pub inv_den: [T; ROOT_BLOCK],
    /// 1 when u ≥ 0.
    pub positive: [u32; ROOT_BLOCK],
    /// STATUS_*.
    pub status: [u32; ROOT_BLOCK],
    /// Solver steps.
    pub iterations: [u32; ROOT_BLOCK],
}

impl<T: Real> RootBlock<T> {
    /// Lane k as a [`Root`].
    pub fn root(&self, k: usize) -> Root<T> {
        Root {
            ua: self.ua[k],
            s: self.s[k],
            inv_den: self.inv_den[k],
            positive: self.positive[k] != 0,
            status: self.status[k],
            iterations: self.iterations[k],
        }
    }
}

/// Solves the problems `(sp[k], sm[k], c[k], t[k])` for `k < n` in
/// lockstep, lanes side by side so that every stage (set-up, Newton or
/// bisection steps, finish) vectorizes. Each lane does exactly the
/// arithmetic of [`RootSearch`] (no contraction, selects instead of
/// branches), so a lane's result is bit-identical to [`solve_root`]'s
/// whatever the other lanes do. Lanes `k ≥ n` must hold zeros. `warm`
/// (length `n`) as in [`solve_roots`].
#[inline(always)]
pub fn solve_block<T: Real>(
    n: usize,
    sp: &[T; ROOT_BLOCK],
    sm: &[T; ROOT_BLOCK],
    c: &[T; ROOT_BLOCK],
    t: &[T; ROOT_BLOCK],
    mut warm: Option<&mut [WarmRoot<T>]>,
) -> RootBlock<T> {
    let quarter = T::from_f64(0.25);
    let half = T::from_f64(0.5);
    let two = T::from_f64(2.0);
    let three_halves = T::from_f64(1.5);
    let mut l = Lanes::<T>::IDLE;
    // RootSearch::start on every lane.
    for i in 0..ROOT_BLOCK {
        let aa = sp[i] * quarter;
        let bb = sm[i] * quarter;
        let h0 = aa - bb - t[i];
        let flat = h0 == T::ZERO;
        let positive = h0 < T::ZERO;
        let a = if positive { aa } else { bb };
        let b = if positive { bb } else { aa };
        let tt = if positive { t[i] } else { -t[i] };
        let g1 = c[i] - b * quarter - tt;
        // Negated comparisons send NaN to the degenerate case, as in `start`.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let degenerate = !flat && !(a > T::ZERO) && !(g1 > T::ZERO);
        let ra = a.sqrt();
        let rb = b.sqrt();
        let ta = ra * two;
        let tb = rb / three_halves;
        let g_half = ta * ta - tb * tb + c[i] * half - tt;
        let immediate = flat || degenerate;
        // Immediate lanes finish as u = 0 (small, q = 0), like `start`'s Ok.
        let small = immediate || g_half >= T::ZERO;
        l.ra[i] = ra;
        l.rb[i] = rb;
        l.c[i] = c[i];
        l.tt[i] = tt;
        l.small[i] = small as u32;
        l.positive[i] = (flat || positive) as u32;
        l.hi[i] = half;
        l.q[i] = if small { T::ZERO } else { half };
        l.status[i] = if flat {
            STATUS_OK
        } else if degenerate {
            STATUS_DEGENERATE
        } else {
            STATUS_NOT_CONVERGED
        };
        l.done[i] = (immediate || i >= n) as u32;
    }
    if let Some(w) = warm.as_deref_mut() {
        for (k, slot) in w[..n].iter_mut().enumerate() {
            if l.done[k] != 0 {
                *slot = WarmRoot::NONE;
            } else if slot.tag == l.tag(k) && slot.q > l.lo[k] && slot.q < l.hi[k] {
                l.q[k] = slot.q;
            }
        }
    }
    let searching = l.done;
    while l.done.contains(&0) {
        l.step();
    }
    let mut out = RootBlock {
        ua: [T::ZERO; ROOT_BLOCK],
        s: [T::ONE; ROOT_BLOCK],
        inv_den: [T::ONE; ROOT_BLOCK],
        positive: l.positive,
        status: l.status,
        iterations: l.it,
    };
    for i in 0..ROOT_BLOCK {
        let q = l.q[i];
        let small = l.small[i] != 0;
        let ua = if small { q } else { T::ONE - q };
        let s = if small { T::ONE - q } else { q };
        out.ua[i] = ua;
        out.s[i] = s;
        out.inv_den[i] = T::ONE / (s * (T::ONE + ua));
    }
    if let Some(w) = warm {
        for (k, slot) in w[..n].iter_mut().enumerate() {
            if searching[k] == 0 {
                *slot = if l.status[k] == STATUS_OK {
                    WarmRoot {
                        q: l.q[k],
                        tag: l.tag(k),
                    }
                } else {
                    WarmRoot::NONE
                };
            }
        }
    }
    out
}

/// [`RootSearch`] states of a block, one array per field. Flags are u32
/// (0/1): bool lanes keep LLVM from vectorizing [`Lanes::step`].
struct Lanes<T> {
    ra: [T; ROOT_BLOCK],
    rb: [T; ROOT_BLOCK],
    c: [T; ROOT_BLOCK],
    tt: [T; ROOT_BLOCK],
    small: [u32; ROOT_BLOCK],
    positive: [u32; ROOT_BLOCK],
    lo: [T; ROOT_BLOCK],
    hi: [T; ROOT_BLOCK],
    q: [T; ROOT_BLOCK],
    it: [u32; ROOT_BLOCK],
    done: [u32; ROOT_BLOCK],
    status: [u32; ROOT_BLOCK],
}

impl<T: Real> Lanes<T> {
    const IDLE: Self = Lanes {
        ra: [T::ZERO; ROOT_BLOCK],
        rb: [T::ZERO; ROOT_BLOCK],
        c: [T::ZERO; ROOT_BLOCK],
        tt: [T::ZERO; ROOT_BLOCK],
        small: [1; ROOT_BLOCK],
        positive: [1; ROOT_BLOCK],
        lo: [T::ZERO; ROOT_BLOCK],
        hi: [T::ZERO; ROOT_BLOCK],
        q: [T::ZERO; ROOT_BLOCK],
        it: [0; ROOT_BLOCK],
        done: [1; ROOT_BLOCK],
        status: [STATUS_OK; ROOT_BLOCK],
    };

    #[inline(always)]
    fn tag(&self, k: usize) -> u8 {
        WARM_VALID
            | if self.small[k] != 0 { WARM_SMALL } else { 0 }
            | if self.positive[k] != 0 {
                WARM_POSITIVE
            } else {
                0
            }
    }

    /// One [`RootSearch::step`] on every lane not yet done, branch-free.
    #[inline(always)]
    fn step(&mut self) {
        let half = T::from_f64(0.5);
        let two = T::from_f64(2.0);
        let four_eps = T::from_f64(4.0) * T::EPSILON;
        for i in 0..ROOT_BLOCK {
            let (ra, rb, c, tt, q) = (self.ra[i], self.rb[i], self.c[i], self.tt[i], self.q[i]);
            let small = self.small[i] != 0;
            let (lo0, hi0) = (self.lo[i], self.hi[i]);
            let om = if small { T::ONE - q } else { q };
            let op = if small { T::ONE + q } else { two - q };
            let r1 = T::ONE / om;
            let r2 = T::ONE / op;
            let xa = ra * r1;
            let xb = rb * r2;
            let vq = if small { q } else { T::ONE - q };
            let g = xa * xa - xb * xb + c * vq - tt;
            let zero = g == T::ZERO;
            let gp = two * xa * xa * r1 + two * xb * xb * r2 + c;
            let fq = if small { g } else { -g };
            let below = fq < T::ZERO;
            let lo = if below { q } else { lo0 };
            let hi = if below { hi0 } else { q };
            let newton = q - fq / gp;
            let inside = newton > lo && newton < hi;
            let floor = four_eps * (xa * xa + xb * xb + (c * vq).abs() + tt.abs());
            let at_floor = g.abs() <= floor;
            let next = if inside { newton } else { (lo + hi) * half };
            let step = (next - q).abs();
            let settled = step <= four_eps * next || next == lo || next == hi;
            let q_settled = if next > T::ZERO { next } else { q };
            let q_floor = if inside { newton } else { q };
            let q_new = if zero {
                q
            } else if at_floor {
                q_floor
            } else if settled {
                q_settled
            } else {
                next
            };
            let live = self.done[i] == 0;
            let capped = self.it[i] >= MAX_ITER;
            let run = live && !capped;
            self.q[i] = if run { q_new } else { q };
            self.lo[i] = if run { lo } else { lo0 };
            self.hi[i] = if run { hi } else { hi0 };
            self.it[i] += run as u32;
            let converged = zero || at_floor || settled;
            // A lane stopped by the cap keeps STATUS_NOT_CONVERGED.
            self.status[i] = if run && converged {
                STATUS_OK
            } else {
                self.status[i]
            };
            self.done[i] = (!live || capped || converged) as u32;
        }
    }
}

/// A previous root kept to start the next search from (see [`solve_roots`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WarmRoot<T> {
    q: T,
    tag: u8,
}

const WARM_VALID: u8 = 1;
const WARM_SMALL: u8 = 2;
const WARM_POSITIVE: u8 = 4;

impl<T: Real> WarmRoot<T> {
    /// No previous root.
    pub const NONE: Self = WarmRoot { q: T::ZERO, tag: 0 };
}

/// Most problems one [`solve_roots`] call takes.
pub const ROOT_BLOCK: usize = 16;

/// A root search in progress (the state of [`solve_root`]'s loop).
#[derive(Clone, Copy, Debug)]
pub struct RootSearch<T> {
    ra: T,
    rb: T,
    c: T,
    tt: T,
    small: bool,
    positive: bool,
    lo: T,
    hi: T,
    q: T,
    it: u32,
    status: u32,
}

impl<T: Real> RootSearch<T> {
    /// Sets up the search; `Ok` when the answer needs no iteration.
    // Negated comparisons send NaN inputs to the degenerate branch instead of the solver.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn start(sp: T, sm: T, c: T, t: T) -> Result<Root<T>, Self> {
        let quarter = T::from_f64(0.25);
        let half = T::from_f64(0.5);
        let two = T::from_f64(2.0);
        let aa = sp * quarter;
        let bb = sm * quarter;
        let h0 = aa - bb - t;
        let mut root = Root {
            ua: T::ZERO,
            s: T::ONE,
            inv_den: T::ONE,
            positive: true,
            status: STATUS_OK,
            iterations: 0,
        };
        if h0 == T::ZERO {
            return Ok(root);
        }
        // Mirror u → −u on the negative side (swap A and B, negate t).
        let positive = h0 < T::ZERO;
        root.positive = positive;
        let (a, b, tt) = if positive { (aa, bb, t) } else { (bb, aa, -t) };
        if !(a > T::ZERO) {
            // G(1−) = −b/4 + c − tt must be positive for a root.
            let g1 = c - b * quarter - tt;
            if !(g1 > T::ZERO) {
                root.status = STATUS_DEGENERATE;
                return Ok(root);
            }
        }
        let ra = a.sqrt();
        let rb = b.sqrt();
        // G at v = 1/2: (ra/(1/2))² − (rb/(3/2))² + c/2 − tt.
        let ta = ra * two;
        let tb = rb / T::from_f64(1.5);
        let g_half = ta * ta - tb * tb + c * half - tt;
        let small = g_half >= T::ZERO;
        // Unknown q: v (small regime, G increasing) or s (large regime, F(s) = G(1−s) decreasing).
        // Keep the bracket [lo, hi] with G(v(lo)) < 0 < G(v(hi)) in v-orientation.
        Err(RootSearch {
            ra,
            rb,
            c,
            tt,
            small,
            positive,
            lo: T::ZERO,
            hi: half,
            q: if small { T::ZERO } else { half },
            it: 0,
            status: STATUS_NOT_CONVERGED,
        })
    }

    fn tag(&self) -> u8 {
        WARM_VALID
            | if self.small { WARM_SMALL } else { 0 }
            | if self.positive { WARM_POSITIVE } else { 0 }
    }

    /// Starts from a previous root when it is on the same side, in the same
    /// regime, and strictly inside the bracket.
    pub fn warm_start(&mut self, w: WarmRoot<T>) {
        if w.tag == self.tag() && w.q > self.lo && w.q < self.hi {
            self.q = w.q;
        }
    }

    /// This search's root, to warm-start the next one.
    pub fn warm(&self) -> WarmRoot<T> {
        if self.status == STATUS_OK {
            WarmRoot {
                q: self.q,
                tag: self.tag(),
            }
        } else {
            WarmRoot::NONE
        }
    }

    /// One Newton (or bisection) step; true when the search is over.
    pub fn step(&mut self) -> bool {
        if self.it >= MAX_ITER {
            return true;
        }
        let half = T::from_f64(0.5);
        let two = T::from_f64(2.0);
        let (ra, rb, c, tt, small) = (self.ra, self.rb, self.c, self.tt, self.small);
        let q = self.q;
        self.it += 1;
        let (om, op) = if small {
            (T::ONE - q, T::ONE + q)
        } else {
            (q, two - q)
        };
        let r1 = T::ONE / om;
        let r2 = T::ONE / op;
        let xa = ra * r1;
        let xb = rb * r2;
        let vq = if small { q } else { T::ONE - q };
        let g = xa * xa - xb * xb + c * vq - tt;
        if g == T::ZERO {
            self.status = STATUS_OK;
            return true;
        }
        // dG/dv = 2a/(1−v)³ + 2b/(1+v)³ + c > 0; dq/dv = ±1.
        let gp = two * xa * xa * r1 + two * xb * xb * r2 + c;
        // In q-orientation the function is G (small) or −G (large).
        let (fq, fpq) = if small { (g, gp) } else { (-g, gp) };
        if fq < T::ZERO {
            self.lo = q;
        } else {
            self.hi = q;
        }
        let newton = q - fq / fpq;
        let inside = newton > self.lo && newton < self.hi;
        // G is zero to within the rounding of its own terms: f32 cannot do
        // better when A ≈ B, so stop here (with the Newton polish if it stays inside).
        let floor = T::from_f64(4.0) * T::EPSILON * (xa * xa + xb * xb + (c * vq).abs() + tt.abs());
        if g.abs() <= floor {
            if inside {
                self.q = newton;
            }
            self.status = STATUS_OK;
            return true;
        }
        let next = if inside {
            newton
        } else {
            (self.lo + self.hi) * half
        };
        let step = (next - q).abs();
        if step <= T::from_f64(4.0) * T::EPSILON * next || next == self.lo || next == self.hi {
            if next > T::ZERO {
                self.q = next;
            }
            self.status = STATUS_OK;
            return true;
        }
        self.q = next;
        false
    }

    /// The root found.
    pub fn finish(&self) -> Root<T> {
        let (ua, s) = if self.small {
            (self.q, T::ONE - self.q)
        } else {
            (T::ONE - self.q, self.q)
        };
        Root {
            ua,
            s,
            inv_den: T::ONE / (s * (T::ONE + ua)),
            positive: self.positive,
            status: self.status,
            iterations: self.it,
        }
    }
}

/// Applies a root to one coordinate pair: returns `(x', w')`.
#[inline(always)]
pub fn apply_root<T: Real>(x: T, w: T, root: &Root<T>) -> (T, T) {
    let s = root.s;
    let k = root.inv_den;
    if s >= T::from_f64(0.5) {
        let u = root.u();
        ((x + u * w) * k, (w + u * x) * k)
    } else if root.positive {
        let sum = x + w;
        ((sum - s * w) * k, (sum - s * x) * k)
    } else {
        let d = x - w;
        ((d + s * w) * k, (s * x - d) * k)
    }
}

/// Result of one projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Projected<T> {
    /// x'.
    pub x: Vec<T>,
    /// w'.
    pub w: Vec<T>,
    /// y' (unchanged in the NMF form).
    pub y: T,
    /// The multiplier u.
    pub u: T,
    /// STATUS_* code.
    pub status: u32,
}

/// Projects one `(x, w, y)`. `g = None` is the NMF form (y fixed, Ω = 1).
pub fn project<T: Real>(x: &[T], w: &[T], y: T, omega: T, g: Option<T>) -> Projected<T> {
    assert_eq!(x.len(), w.len());
    let mut sp = T::ZERO;
    let mut sm = T::ZERO;
    for (&xi, &wi) in x.iter().zip(w) {
        sp += (xi + wi) * (xi + wi);
        sm += (xi - wi) * (xi - wi);
    }
    let (c, t) = match g {
        Some(g) => (omega * omega / g, omega * y),
        None => (T::ZERO, y),
    };
    let root = solve_root(sp, sm, c, t);
    if root.status == STATUS_DEGENERATE {
        return Projected {
            x: x.to_vec(),
            w: w.to_vec(),
            y,
            u: T::ZERO,
            status: root.status,
        };
    }
    let (xo, wo): (Vec<T>, Vec<T>) = x
        .iter()
        .zip(w)
        .map(|(&a, &b)| apply_root(a, b, &root))
        .unzip();
    let u = root.u();
    let yo = match g {
        Some(g) => y - omega * u / g,
        None => y,
    };
    Projected {
        x: xo,
        w: wo,
        y: yo,
        u,
        status: root.status,
    }
}

/// A batch of independent bilinear problems in CSR form (problem p owns
/// elements `ptr[p]..ptr[p+1]` of `x` and `w`). `g[p] == 0` selects the NMF
/// form for that problem.
#[derive(Clone, Debug, Default)]
pub struct BilinearBatch {
    /// CSR offsets, length P+1.
    pub ptr: Vec<u32>,
    /// x, concatenated.
    pub x: Vec<f64>,
    /// w, concatenated.
    pub w: Vec<f64>,
    /// y per problem.
    pub y: Vec<f64>,
    /// Ω per problem.
    pub omega: Vec<f64>,
    /// g per problem (0 = NMF form).
    pub g: Vec<f64>,
}

/// Outputs of [`project_batch_reference`] / the GPU kernel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BilinearOut {
    /// x'.
    pub x: Vec<f64>,
    /// w'.
    pub w: Vec<f64>,
    /// y'.
    pub y: Vec<f64>,
    /// u per problem.
    pub u: Vec<f64>,
    /// STATUS_* per problem.
    pub status: Vec<u32>,
}

impl BilinearBatch {
    /// Number of problems.
    pub fn problems(&self) -> usize {
        self.y.len()
    }
}

/// The plain-loop f64 CPU twin of `shaders/project_bilinear.wgsl`, evaluated in precision `T`.
pub fn project_batch_reference<T: Real>(batch: &BilinearBatch) -> BilinearOut {
    let mut out = BilinearOut {
        x: vec![0.0; batch.x.len()],
        w: vec![0.0; batch.w.len()],
        ..Default::default()
    };
    for p in 0..batch.problems() {
        let (a, b) = (batch.ptr[p] as usize, batch.ptr[p + 1] as usize);
        let x: Vec<T> = batch.x[a..b].iter().map(|&v| T::from_f64(v)).collect();
        let w: Vec<T> = batch.w[a..b].iter().map(|&v| T::from_f64(v)).collect();
        let g = (batch.g[p] != 0.0).then(|| T::from_f64(batch.g[p]));
        let r = project(
            &x,
            &w,
            T::from_f64(batch.y[p]),
            T::from_f64(batch.omega[p]),
            g,
        );
        for i in a..b {
            out.x[i] = r.x[i - a].to_f64();
            out.w[i] = r.w[i - a].to_f64();
        }
        out.y.push(r.y.to_f64());
        out.u.push(r.u.to_f64());
        out.status.push(r.status);
    }
    out
}

/// Batched bilinear projection.
pub fn gpu(ctx: &Arc<GpuContext>, prec: Precision, batch: &BilinearBatch) -> Result<BilinearOut> {
    let np = batch.problems();
    let params = ctx.uniform(&Params {
        problems: np as u32,
        pad: [0; 3],
    })?;
    let ptr = ctx.upload_u32(&batch.ptr)?;
    let x = ctx.upload_real(&batch.x, prec)?;
    let w = ctx.upload_real(&batch.w, prec)?;
    let y = ctx.upload_real(&batch.y, prec)?;
    let om = ctx.upload_real(&batch.omega, prec)?;
    let g = ctx.upload_real(&batch.g, prec)?;
    let xo = ctx.alloc(batch.x.len(), Elem::Real(prec))?;
    let wo = ctx.alloc(batch.w.len(), Elem::Real(prec))?;
    let yo = ctx.alloc(np, Elem::Real(prec))?;
    let uo = ctx.alloc(np, Elem::Real(prec))?;
    let so = ctx.alloc(np, Elem::U32)?;
    let d = ctx.prepare(
        &KERNEL,
        prec,
        &[
            (&params).into(),
            (&ptr).into(),
            (&x).into(),
            (&w).into(),
            (&y).into(),
            (&om).into(),
            (&g).into(),
            (&xo).into(),
            (&wo).into(),
            (&yo).into(),
            (&uo).into(),
            (&so).into(),
        ],
        np as u64,
    )?;
    ctx.run_one(&d)?;
    Ok(BilinearOut {
        x: xo.read_real()?,
        w: wo.read_real()?,
        y: yo.read_real()?,
        u: uo.read_real()?,
        status: so.read_u32()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_multiplier_when_already_on_the_set() {
        let r = project(&[1.0f64, 2.0], &[3.0, 4.0], 11.0, 1.0, None);
        assert_eq!(r.u, 0.0);
        assert_eq!(r.x, vec![1.0, 2.0]);
    }

    #[test]
    fn degenerate_is_reported() {
        // x == w and a target below |x|²/4 ... with y fixed: no root.
        let r = project(&[1.0f64], &[1.0], -1.0, 1.0, None);
        assert_eq!(r.status, STATUS_DEGENERATE);
        let r = project(&[0.0f64], &[0.0], 1.0, 1.0, None);
        assert_eq!(r.status, STATUS_DEGENERATE);
    }
}
