//! Kernel-matrix products without the matrix: with A (m × d) and B (n × d)
//! row-major and M (n × r),
//!
//! ```text
//! out[i][c] = Σ_j w_ij f(‖a_i − b_j‖²) M[j][c]
//! f(s) = exp(−s / 2σ²)  (Gaussian)   or   √s  (distance)
//! w_ij = Γ_ij = [y_i = y_j] − p_{y_i} − p_{y_j} + ‖p‖²  (optional; H Y Yᵀ H
//!        from the class frequencies p, never stored), else 1
//! f = 0 on i == j when `zero_diag` (the ISM solver's K)
//! ```
//!
//! Every n × n quantity the HSIC solvers need is one of these with a thin
//! M: per-class kernel sums (M = one-hot labels), W_s unit outputs (M =
//! unit indicators), ΨZ and 1ᵀΨ of the ISM Φ build (M = [Z, 1]), and the
//! silhouette's per-class distance sums. Nothing n × n is stored: the GPU
//! builds K a 64 × 16 tile at a time in workgroup memory (2 × 2 values per
//! invocation of 256) and multiplies it into a 64 × 64 output tile (4 × 4
//! per invocation; 64 × 16 and 2 × 2 for outputs at most 16 wide), the CPU a
//! 64 × 64 tile at a time before a GEMM. Gaussian tiles come from
//! ‖a‖² + ‖b‖² − 2a·b on rows shifted by B's mean (on the CPU from 16
//! features up, with the dot products by a GEMM too); distances always
//! from Σ (a − b)², since the square root would magnify the cancelling
//! form's error on small distances. The processes of a data-parallel run
//! split a product into parts ([`Spec::part`], [`cpu_part`]): row blocks of
//! A, whose outputs add up exactly, or runs of the symmetric path's fixed
//! partial sums, gathered and added in order: either way N processes get
//! the bits of one. For a symmetric K(A, A) the CPU also has the upper-half
//! product ([`cpu_upper_part`]: U·M and Uᵀ·1 with K = U + Uᵀ), from which
//! the ISM builds Φ = MᵀKM with half the kernel values and half the GEMM.
//! Twin of `shaders/kernel_product.wgsl`.

use super::dense::gemm_acc;
use super::gauss_kernel::{exp_neg, exp_neg_f32};
use super::par::{SimdLevel, dot, parallel_enough, simd_dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, Kernel, RowTiles};
use crate::real::{Precision, Real};
use rayon::prelude::*;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "kernel_product",
    source: include_str!("../../shaders/kernel_product.wgsl"),
    deps: &[include_str!("../../shaders/gauss_kernel.wgsl")],
    entry: "kernel_product",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
    ],
    workgroup: 256,
    lanes: 1,
};

/// Rows of A and output columns per GPU workgroup (`TI` and the column
/// tile in the shader) for an output `w` columns wide: 64 × 16 when thin,
/// else 64 × 64.
pub fn gpu_tile(w: usize) -> (usize, usize) {
    if w <= 16 { (64, 16) } else { (64, 64) }
}

/// Uniform parameters (matches `ProductParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of A in this tile.
    pub rows: u32,
    /// First row of A in this tile.
    pub row0: u32,
    /// Rows of B.
    pub n: u32,
    /// Features d.
    pub d: u32,
    /// Columns of M.
    pub r: u32,
    /// 0 = Gaussian, 1 = distance.
    pub func: u32,
    /// 1 = no i == j terms.
    pub zero_diag: u32,
    /// 1 = weight by Γ.
    pub use_gamma: u32,
    /// Offset of B's labels in the label buffer.
    pub lb_off: u32,
    /// 1 = append Σ_j f² as column r.
    pub squares: u32,
    /// Offset in the scalars of ‖a_i‖² (Gaussian only).
    pub norm_a: u32,
    /// Offset in the scalars of ‖b_j‖² (Gaussian only).
    pub norm_b: u32,
    /// First row of B of this dispatch (a multiple of 16).
    pub j_begin: u32,
    /// End of this dispatch's rows of B.
    pub j_end: u32,
    /// 1 = the sums go on from the output's (a later part of B).
    pub resume: u32,
    /// Padding.
    pub pad: u32,
}

/// Rows of B one dispatch takes for `d` features ([`crate::gpu::loop_span`]):
/// an invocation runs about d + 90 loop iterations per 16 rows of B (the
/// features, M's staging, the tile's 16 columns, and the f64
/// exponential's loops), so on a software adapter a product is split over
/// dispatches that resume from the output: the same sums in the same
/// order.
pub fn rows_of_b_per_dispatch(software: bool, d: usize) -> usize {
    crate::gpu::loop_span(software, d + 90, 16)
}

/// The pair function f.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Func {
    /// exp(−‖a − b‖² / 2σ²).
    Gauss {
        /// σ.
        sigma: f64,
    },
    /// ‖a − b‖.
    Dist,
}

/// Γ weights: labels of A's and B's rows and the class frequencies p.
#[derive(Clone, Copy, Debug)]
pub struct Gamma<'a> {
    /// Labels of A's rows.
    pub la: &'a [u32],
    /// Labels of B's rows.
    pub lb: &'a [u32],
    /// Class frequencies.
    pub p: &'a [f64],
}

/// What to compute besides the matrices.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    /// f.
    pub func: Func,
    /// Drop the i == j terms.
    pub zero_diag: bool,
    /// Weight by Γ.
    pub gamma: Option<Gamma<'a>>,
    /// Append a column Σ_j (w_ij f_ij)² to the output (Σ K² for the HSIC
    /// normalization, at no extra kernel evaluations).
    pub squares: bool,
    /// (p, P): compute part p of P of the work (the processes of a
    /// data-parallel run split it; see [`cpu_part`]). (0, 1) is all of it.
    pub part: (usize, usize),
}

impl Spec<'_> {
    /// The plain Gaussian kernel at σ.
    pub fn gauss(sigma: f64) -> Spec<'static> {
        Spec {
            func: Func::Gauss { sigma },
            zero_diag: false,
            gamma: None,
            squares: false,
            part: (0, 1),
        }
    }

    /// Pairwise distances.
    pub fn dist() -> Spec<'static> {
        Spec {
            func: Func::Dist,
            zero_diag: false,
            gamma: None,
            squares: false,
            part: (0, 1),
        }
    }

    /// This part's contiguous slice of `n` things (as even as can be).
    pub fn part_of(&self, n: usize) -> std::ops::Range<usize> {
        let (p, parts) = (self.part.0, self.part.1.max(1));
        let at = |p: usize| p * (n / parts) + p.min(n % parts);
        at(p)..at(p + 1)
    }

    /// Output columns for an M of `r` columns.
    pub fn width(&self, r: usize) -> usize {
        r + self.squares as usize
    }

    /// 1/2σ² (0 for distances), the shader's `scalars[0]`.
    pub fn g(&self) -> f64 {
        match self.func {
            Func::Gauss { sigma } => 1.0 / (2.0 * sigma * sigma),
            Func::Dist => 0.0,
        }
    }

    /// The shader's scalars: [g, ‖p‖², p…].
    pub fn scalars(&self) -> Vec<f64> {
        let p = self.gamma.map(|g| g.p).unwrap_or(&[]);
        let mut s = vec![self.g(), p.iter().map(|v| v * v).sum()];
        s.extend_from_slice(p);
        s
    }

    fn weight(&self, i: usize, j: usize) -> f64 {
        match self.gamma {
            None => 1.0,
            Some(g) => {
                let p2: f64 = g.p.iter().map(|v| v * v).sum();
                let (yi, yj) = (g.la[i], g.lb[j]);
                (yi == yj) as u32 as f64 - g.p[yi as usize] - g.p[yj as usize] + p2
            }
        }
    }
}

/// Rows of A and B, checking the shapes.
pub fn shape<T>(a: &[T], b: &[T], d: usize, m: &[T], r: usize, spec: &Spec) -> (usize, usize) {
    if d == 0 {
        return (0, 0);
    }
    assert!(
        a.len().is_multiple_of(d) && b.len().is_multiple_of(d),
        "rows of length d"
    );
    let (na, nb) = (a.len() / d, b.len() / d);
    assert_eq!(m.len(), nb * r, "M is n × r");
    check_labels(na, nb, spec);
    (na, nb)
}

/// Checks Γ's labels: one per row of A (`na`) and of B (`nb`), each a class
/// of p.
pub fn check_labels(na: usize, nb: usize, spec: &Spec) {
    if let Some(g) = spec.gamma {
        assert_eq!((g.la.len(), g.lb.len()), (na, nb), "one label per row");
        assert!(
            g.la.iter().chain(g.lb).all(|&c| (c as usize) < g.p.len()),
            "labels index p"
        );
    }
}

/// Plain-loop f64 twin.
pub fn reference(a: &[f64], b: &[f64], d: usize, m: &[f64], r: usize, spec: &Spec) -> Vec<f64> {
    let (na, nb) = shape(a, b, d, m, r, spec);
    let w = spec.width(r);
    let mut out = vec![0.0; na * w];
    for i in spec.part_of(na) {
        for j in 0..nb {
            if spec.zero_diag && i == j {
                continue;
            }
            let mut s = 0.0;
            for c in 0..d {
                let t = a[i * d + c] - b[j * d + c];
                s += t * t;
            }
            let f = match spec.func {
                Func::Gauss { sigma } => (-s / (2.0 * sigma * sigma)).exp(),
                Func::Dist => s.sqrt(),
            } * spec.weight(i, j);
            for c in 0..r {
                out[i * w + c] += f * m[j * r + c];
            }
            if spec.squares {
                out[i * w + r] += f * f;
            }
        }
    }
    out
}

/// `out[j] = ‖ai − b_j‖` from B transposed (d × n).
#[inline(always)]
fn dist_row<T: Real>(ai: &[T], bt: &[T], n: usize, out: &mut [T]) {
    out.fill(T::ZERO);
    for (c, &av) in ai.iter().enumerate() {
        for (o, &bv) in out.iter_mut().zip(&bt[c * n..(c + 1) * n]) {
            let t = av - bv;
            *o += t * t;
        }
    }
    for o in out.iter_mut() {
        *o = o.sqrt();
    }
}

/// Rows (and columns) of K per CPU tile: a 64 × 64 tile stays in cache for
/// the GEMM that follows.
const TILE: usize = 64;

/// Output widths up to this many columns take the symmetric path (half the
/// kernel values); above it the GEMM dominates, and splitting it into
/// partial outputs costs more memory traffic than the kernel values save.
const SYMMETRIC_MAX_COLS: usize = 32;

/// Fixed partial-sum count of the symmetric path: results do not depend on
/// the thread count, and the partials add in a fixed order.
const PARTIALS: usize = 8;

/// CPU backend. K is built a tile at a time (kernel values, Γ weights, zero
/// diagonal), then multiplied into the output. When A and B are the same
/// rows (and labels) and the output is at most [`SYMMETRIC_MAX_COLS`] wide,
/// only tiles on or above the diagonal are built and each also adds its
/// transpose; otherwise row tiles of A run in parallel over all of B, each
/// K tile going through a GEMM.
pub fn cpu<T: Real>(a: &[T], b: &[T], d: usize, m: &[T], r: usize, spec: &Spec, out: &mut [T]) {
    let (na, nb) = shape(a, b, d, m, r, spec);
    let w = spec.width(r);
    assert_eq!(out.len(), na * w);
    out.fill(T::ZERO);
    if na == 0 || w == 0 || nb == 0 {
        return;
    }
    match cpu_part(a, b, d, m, r, spec) {
        Part::Rows(rows) => out.copy_from_slice(&rows),
        Part::Partials { thin, data } => add_partials(&data, na, w, thin, out),
    }
}

/// What one part of a kernel product split over processes produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Part<T> {
    /// The whole output with only this part's rows of A filled (the others
    /// zero): the parts add up exactly, whatever the order.
    Rows(Vec<T>),
    /// The symmetric path's partial outputs of this part, in order and
    /// concatenated (each n × w, transposed when `thin`): gathered from
    /// every part in order, [`add_partials`] adds them as one process
    /// would, so the result has the same bits.
    Partials {
        /// Partials are w × n (transposed).
        thin: bool,
        /// The partials, concatenated.
        data: Vec<T>,
    },
}

impl<T> Part<T> {
    /// The same part with its values converted by `f`.
    pub fn map<U>(self, f: impl FnOnce(Vec<T>) -> Vec<U>) -> Part<U> {
        match self {
            Part::Rows(v) => Part::Rows(f(v)),
            Part::Partials { thin, data } => Part::Partials {
                thin,
                data: f(data),
            },
        }
    }
}

/// Part `spec.part` of the kernel product on the CPU: row tiles of A, or
/// (when A and B are the same rows) a run of the symmetric path's partial
/// sums.
pub fn cpu_part<T: Real>(a: &[T], b: &[T], d: usize, m: &[T], r: usize, spec: &Spec) -> Part<T> {
    let (na, nb) = shape(a, b, d, m, r, spec);
    let w = spec.width(r);
    let mut out = vec![T::ZERO; na * w];
    if na == 0 || w == 0 || nb == 0 {
        return Part::Rows(out);
    }
    let tiles = Tiles::new(a, b, d, spec);
    let same = std::ptr::eq(a, b) && spec.gamma.is_none_or(|g| std::ptr::eq(g.la, g.lb));
    let work = na * nb * (d + r + 16);
    if same && w <= SYMMETRIC_MAX_COLS && nb > TILE {
        let (thin, data) = symmetric(&tiles, m, r, spec, parallel_enough(work >> 7));
        return Part::Partials { thin, data };
    }
    // This part's row tiles of A.
    let mine = spec.part_of(na.div_ceil(TILE));
    let row_tile = |(ti, ob): (usize, &mut [T])| {
        if !mine.contains(&ti) {
            return;
        }
        let i0 = ti * TILE;
        let rows = ob.len() / w;
        let mut k = vec![T::ZERO; rows * TILE];
        for j0 in (0..nb).step_by(TILE) {
            let cols = TILE.min(nb - j0);
            tiles.fill(i0, rows, j0, cols, &mut k);
            accumulate(&k, rows, cols, &m[j0 * r..], r, ob, w, false, spec.squares);
        }
    };
    if parallel_enough(work >> 6) {
        out.par_chunks_mut(TILE * w).enumerate().for_each(row_tile);
    } else {
        out.chunks_mut(TILE * w).enumerate().for_each(row_tile);
    }
    Part::Rows(out)
}

/// Adds partial outputs (each n × w, or w × n when `thin`) into `out`
/// (n × w) in order: the symmetric path's last step, the same for one
/// process and for partials gathered from several.
pub fn add_partials<T: Real>(data: &[T], n: usize, w: usize, thin: bool, out: &mut [T]) {
    out.fill(T::ZERO);
    if n * w == 0 {
        return;
    }
    for p in data.chunks_exact(n * w) {
        if thin {
            for c in 0..w {
                for j in 0..n {
                    out[j * w + c] += p[c * n + j];
                }
            }
        } else {
            out.iter_mut().zip(p).for_each(|(o, &v)| *o += v);
        }
    }
}

/// The symmetric path: tile pairs (I ≤ J) split into [`PARTIALS`] equal
/// runs, each summed into its own output, then added in order. Up to
/// [`THIN_COLS`] output columns the partial outputs are kept transposed
/// (w × n), so that both a tile's row sums (dot products along j) and its
/// transpose's (axpys along j) vectorize; wider ones take two GEMMs per
/// tile, K·M_J into rows I and Kᵀ·M_I into rows J (the GEMM work of the
/// full path, with half the kernel values).
fn symmetric<T: Real>(t: &Tiles<T>, m: &[T], r: usize, spec: &Spec, par: bool) -> (bool, Vec<T>) {
    let n = t.nb;
    let w = spec.width(r);
    let thin = w <= THIN_COLS;
    let nt = n.div_ceil(TILE);
    let mut mt = vec![T::ZERO; if thin { r * n } else { 0 }];
    if thin {
        for j in 0..n {
            for c in 0..r {
                mt[c * n + j] = m[j * r + c];
            }
        }
    }
    let pairs: Vec<(usize, usize)> = (0..nt).flat_map(|i| (i..nt).map(move |j| (i, j))).collect();
    let per = pairs.len().div_ceil(PARTIALS);
    // This part's runs of tile pairs (all of them for a whole product).
    let runs = pairs.len().div_ceil(per);
    let mine = spec.part_of(runs);
    let pairs = &pairs[(mine.start * per).min(pairs.len())..(mine.end * per).min(pairs.len())];
    let run = |chunk: &[(usize, usize)]| {
        let mut acc = vec![T::ZERO; w * n];
        let mut k = vec![T::ZERO; TILE * TILE];
        for &(ti, tj) in chunk {
            let (i0, j0) = (ti * TILE, tj * TILE);
            let (rows, cols) = (TILE.min(n - i0), TILE.min(n - j0));
            t.fill(i0, rows, j0, cols, &mut k);
            let both = ti != tj;
            if thin {
                let tile = SymTile {
                    rows,
                    cols,
                    i0,
                    j0,
                    n,
                    r,
                    squares: spec.squares,
                    both,
                };
                sym_tile_at(t.level, &k, &mt, tile, &mut acc);
                continue;
            }
            let (mi, mj) = (&m[i0 * r..], &m[j0 * r..]);
            accumulate(
                &k,
                rows,
                cols,
                mj,
                r,
                &mut acc[i0 * w..],
                w,
                false,
                spec.squares,
            );
            if both {
                accumulate(
                    &k,
                    rows,
                    cols,
                    mi,
                    r,
                    &mut acc[j0 * w..],
                    w,
                    true,
                    spec.squares,
                );
            }
        }
        acc
    };
    let partials: Vec<Vec<T>> = if par {
        pairs.par_chunks(per).map(run).collect()
    } else {
        pairs.chunks(per).map(run).collect()
    };
    (thin, partials.concat())
}

/// One part of the upper-half product of K(A, A) (see [`cpu_upper_part`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Upper<T> {
    /// U·M (n × r) in this part's rows, zero in the others: the parts add
    /// up exactly, whatever the order.
    pub rows: Vec<T>,
    /// This part's runs' column sums of U (n each), in order and
    /// concatenated: gathered from every part in order, [`add_partials`]
    /// (w = 1) adds them as one process would.
    pub col_sums: Vec<T>,
}

impl<T> Upper<T> {
    /// The same part with its values converted by `f`.
    pub fn map<U>(self, f: impl Fn(Vec<T>) -> Vec<U>) -> Upper<U> {
        Upper {
            rows: f(self.rows),
            col_sums: f(self.col_sums),
        }
    }
}

/// Runs of row blocks of the upper-half product: fixed, so that its
/// partial column sums, and the result's bits, do not depend on the thread
/// or process count.
const UPPER_RUNS: usize = 16;

/// Row tiles per block of the upper-half product: a block's tiles in one
/// column of tiles are stacked into one kernel fill and one GEMM, so that
/// the GEMM packs that column's rows of M once per block rather than once
/// per tile (packing took about 18% of an ISM iteration at n = 10,000 with
/// a tile per GEMM).
const STACK: usize = 4;

/// Part `spec.part` of the upper-half product of a symmetric kernel matrix
/// K = K(A, A) (w ∘ f, with Γ and the zero diagonal as in `spec`; no
/// squares column): U is K's 64 × 64 tiles on and above the diagonal, the
/// diagonal tiles halved, so that K = U + Uᵀ. Returns U·M and U's column
/// sums: K·1 = U·1 + Uᵀ·1, and MᵀKM = MᵀUM + (MᵀUM)ᵀ, from half the kernel
/// values and half the product of [`cpu`] (the ISM's Φ). Blocks of
/// [`STACK`] row tiles run in [`UPPER_RUNS`] runs of even work, in
/// parallel.
pub fn cpu_upper_part<T: Real>(a: &[T], d: usize, m: &[T], r: usize, spec: &Spec) -> Upper<T> {
    assert!(
        !spec.squares,
        "the upper-half product has no squares column"
    );
    let (n, _) = shape(a, a, d, m, r, spec);
    let nt = n.div_ceil(TILE);
    let runs = upper_runs(nt);
    let mine = &runs[spec.part_of(runs.len())];
    let mut rows = vec![T::ZERO; n * r];
    let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
        return Upper {
            rows,
            col_sums: vec![],
        };
    };
    let row = |t: usize| (t * TILE).min(n);
    let tiles = Tiles::new(a, a, d, spec);
    let half = T::from_f64(0.5);
    let run = |(tiles_of, out): (std::ops::Range<usize>, &mut [T])| {
        let mut col = vec![T::ZERO; n];
        // On the heap: 128 KiB in f64.
        let mut k = vec![T::ZERO; STACK * TILE * TILE].into_boxed_slice();
        let base = row(tiles_of.start);
        for tb in tiles_of.step_by(STACK) {
            let i0 = tb * TILE;
            let block_end = (tb + STACK).min(nt);
            for tj in tb..nt {
                // The block's tiles on and above the diagonal in this column:
                // its first ones, down to tile tj.
                let end = row((tj + 1).min(block_end));
                let (rows, j0) = (end - i0, tj * TILE);
                let cols = TILE.min(n - j0);
                let k = &mut k[..rows * TILE];
                tiles.fill(i0, rows, j0, cols, k);
                if tj < block_end {
                    let diag = (tj - tb) * TILE * TILE;
                    k[diag..].iter_mut().for_each(|v| *v *= half);
                }
                let ob = &mut out[(i0 - base) * r..(end - base) * r];
                accumulate(k, rows, cols, &m[j0 * r..], r, ob, r, false, false);
                let cs = &mut col[j0..j0 + cols];
                for kr in k.chunks_exact(TILE) {
                    cs.iter_mut().zip(kr).for_each(|(c, &v)| *c += v);
                }
            }
        }
        col
    };
    let (_, mut rest) = rows.split_at_mut(row(first.start) * r);
    let mut jobs = Vec::with_capacity(mine.len());
    for tiles_of in mine {
        let (out, tail) = rest.split_at_mut((row(tiles_of.end) - row(tiles_of.start)) * r);
        jobs.push((tiles_of.clone(), out));
        rest = tail;
    }
    let work = (row(last.end) - row(first.start)) * n * (d + r + 16) / 2;
    let cols: Vec<Vec<T>> = if parallel_enough(work >> 6) {
        jobs.into_par_iter().map(run).collect()
    } else {
        jobs.into_iter().map(run).collect()
    };
    Upper {
        rows,
        col_sums: cols.concat(),
    }
}

/// The upper-half product of K(A, A) in one process: (U·M, Uᵀ·1); see
/// [`cpu_upper_part`].
pub fn cpu_upper<T: Real>(a: &[T], d: usize, m: &[T], r: usize, spec: &Spec) -> (Vec<T>, Vec<T>) {
    let n = a.len().checked_div(d).unwrap_or(0);
    let whole = Spec {
        part: (0, 1),
        ..*spec
    };
    let part = cpu_upper_part(a, d, m, r, &whole);
    let mut sums = vec![T::ZERO; n];
    add_partials(&part.col_sums, n, 1, false, &mut sums);
    (part.rows, sums)
}

/// [`UPPER_RUNS`] runs of row tiles (of `nt`), each whole blocks of
/// [`STACK`], with even numbers of tile products (tile t has nt − t), the
/// empty ones left out.
fn upper_runs(nt: usize) -> Vec<std::ops::Range<usize>> {
    let total = nt * (nt + 1) / 2;
    let mut runs = vec![];
    let (mut start, mut done) = (0, 0);
    for tb in (0..nt).step_by(STACK) {
        let end = (tb + STACK).min(nt);
        done += (tb..end).map(|t| nt - t).sum::<usize>();
        if done * UPPER_RUNS >= (runs.len() + 1) * total || end == nt {
            runs.push(start..end);
            start = end;
        }
    }
    runs
}

/// Output widths of the symmetric path's dot-and-axpy tiles; a GEMM per
/// tile and direction is faster above (W_s on car, one column per class: a
/// third faster with these tiles; car's first ISM layer, 7 columns: a
/// quarter slower).
const THIN_COLS: usize = 5;

/// Where a tile sits and what it adds (see [`sym_tile`]).
#[derive(Clone, Copy)]
struct SymTile {
    rows: usize,
    cols: usize,
    i0: usize,
    j0: usize,
    n: usize,
    r: usize,
    squares: bool,
    both: bool,
}

simd_dispatch! {
    /// [`sym_tile`] for a SIMD level.
    fn sym_tile_at<T>(k: &[T], mt: &[T], t: SymTile, acc: &mut [T]) -> () = sym_tile
}

/// Adds a K tile (row stride TILE) to the transposed output `acc` (w × n):
/// acc[c][i] += Σ_j K_ij Mᵀ[c][j] and, when `both`, acc[c][j] += K_ij Mᵀ[c][i]
/// (the mirrored tile); the squares row c = r takes K².
#[inline(always)]
fn sym_tile<T: Real>(k: &[T], mt: &[T], t: SymTile, acc: &mut [T]) {
    let n = t.n;
    for li in 0..t.rows {
        let i = t.i0 + li;
        let kr = &k[li * TILE..li * TILE + t.cols];
        for c in 0..t.r {
            acc[c * n + i] += dot(kr, &mt[c * n + t.j0..c * n + t.j0 + t.cols]);
        }
        if t.squares {
            acc[t.r * n + i] += dot(kr, kr);
        }
        if t.both {
            for c in 0..t.r {
                let f = mt[c * n + i];
                let dst = &mut acc[c * n + t.j0..c * n + t.j0 + t.cols];
                dst.iter_mut()
                    .zip(kr)
                    .for_each(|(o, &v)| *o = f.mul_add(v, *o));
            }
            if t.squares {
                let dst = &mut acc[t.r * n + t.j0..t.r * n + t.j0 + t.cols];
                dst.iter_mut()
                    .zip(kr)
                    .for_each(|(o, &v)| *o = v.mul_add(v, *o));
            }
        }
    }
}

/// out (rows × w, first r columns) += K · M (or Kᵀ · M when `transposed`,
/// K being rows × cols and the output then cols × w), and column r += the
/// row (column) sums of K².
#[allow(clippy::too_many_arguments)]
fn accumulate<T: Real>(
    k: &[T],
    rows: usize,
    cols: usize,
    m: &[T],
    r: usize,
    out: &mut [T],
    w: usize,
    transposed: bool,
    squares: bool,
) {
    let (orows, inner) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    // K is stored with row stride TILE.
    let (rs, cs) = if transposed { (1, TILE) } else { (TILE, 1) };
    if r > 0 {
        gemm_acc(orows, inner, r, k, rs, cs, m, r, out, w);
    }
    if squares {
        for o in 0..orows {
            let mut s = T::ZERO;
            for i in 0..inner {
                let v = k[o * rs + i * cs];
                s += v * v;
            }
            out[o * w + r] += s;
        }
    }
}

/// Kernel-tile builder: B's rows re-laid tile by tile, transposed (d × 64
/// per tile) so that each kernel row vectorizes along j; Γ rows per class.
struct Tiles<'s, T> {
    a: &'s [T],
    bt: Vec<T>,
    /// Gaussian tiles of at least [`DOT_MIN_FEATURES`] features: A and Bᵀ
    /// shifted by B's mean and their squared row norms (see [`fill_dot`]).
    dot: Option<DotForm<T>>,
    d: usize,
    nb: usize,
    g: f64,
    spec: &'s Spec<'s>,
    gamma_rows: Vec<Vec<T>>,
    level: SimdLevel,
}

impl<'s, T: Real> Tiles<'s, T> {
    fn new(a: &'s [T], b: &'s [T], d: usize, spec: &'s Spec<'s>) -> Self {
        let nb = b.len() / d;
        let transposed = |shift: &[T]| {
            let mut bt = vec![T::ZERO; nb.div_ceil(TILE) * TILE * d];
            for j in 0..nb {
                let (tile, jj) = (j / TILE, j % TILE);
                for c in 0..d {
                    bt[tile * TILE * d + c * TILE + jj] = b[j * d + c] - shift[c];
                }
            }
            bt
        };
        let gauss = matches!(spec.func, Func::Gauss { .. });
        let dot =
            (gauss && d >= DOT_MIN_FEATURES && nb > 0).then(|| DotForm::new(a, b, d, &transposed));
        let bt = if dot.is_some() {
            vec![]
        } else {
            transposed(&vec![T::ZERO; d])
        };
        // Γ row for A's class c: w_j = [y_j = c] − p_{y_j} + (‖p‖² − p_c).
        let gamma_rows = match spec.gamma {
            None => vec![],
            Some(g) => {
                let p2: f64 = g.p.iter().map(|v| v * v).sum();
                (0..g.p.len())
                    .map(|c| {
                        g.lb.iter()
                            .map(|&yj| {
                                let same = (yj as usize == c) as u32 as f64;
                                T::from_f64(same - g.p[yj as usize] + (p2 - g.p[c]))
                            })
                            .collect()
                    })
                    .collect()
            }
        };
        Tiles {
            a,
            bt,
            dot,
            d,
            nb,
            g: spec.g(),
            spec,
            gamma_rows,
            level: SimdLevel::current(),
        }
    }

    /// Kernel values of A's row i against B's rows j0.. times their Γ
    /// weights, and zero on the diagonal when asked.
    #[inline(always)]
    fn weigh(&self, i: usize, j0: usize, kr: &mut [T]) {
        let cols = kr.len();
        if let Some(g) = self.spec.gamma {
            let gr = &self.gamma_rows[g.la[i] as usize][j0..j0 + cols];
            kr.iter_mut().zip(gr).for_each(|(v, &w)| *v *= w);
        }
        if self.spec.zero_diag && (j0..j0 + cols).contains(&i) {
            kr[i - j0] = T::ZERO;
        }
    }

    /// k[li][lj] (row stride TILE) = w f for A rows i0.. and B rows j0.. (j0
    /// a multiple of TILE).
    fn fill(&self, i0: usize, rows: usize, j0: usize, cols: usize, k: &mut [T]) {
        match &self.dot {
            Some(f) => fill_dot(self, f, i0, rows, j0, cols, k),
            None => fill_at(self.level, self, i0, rows, j0, cols, k),
        }
    }
}

/// Gaussian tiles from ‖a‖² + ‖b‖² − 2a·b from this many features up:
/// the dot products are a blocked GEMM. A Ψ product at n = 4000 with 47
/// features and 50 columns (f32, one thread) took 0.048 s against 0.059 s
/// with the difference-and-square loop; the two are even at 12–16 features,
/// and the loop is faster below.
const DOT_MIN_FEATURES: usize = 16;

/// A's rows and B's tiles (as [`Tiles::bt`]) less B's mean, so that the
/// norms, and the cancellation in ‖a‖² + ‖b‖² − 2a·b, are those of the
/// spread of the data and not of its offset; and their squared norms.
struct DotForm<T> {
    a: Vec<T>,
    bt: Vec<T>,
    a_norms: Vec<T>,
    b_norms: Vec<T>,
}

impl<T: Real> DotForm<T> {
    fn new(a: &[T], b: &[T], d: usize, transposed: &dyn Fn(&[T]) -> Vec<T>) -> Self {
        let nb = b.len() / d;
        let mean: Vec<T> = row_mean(b, d).into_iter().map(T::from_f64).collect();
        let a = rows_less(a, &mean, d);
        let mut b_norms = norms_less(b, &mean, d);
        b_norms.resize(nb.div_ceil(TILE) * TILE, T::ZERO);
        DotForm {
            a_norms: norms_less(&a, &vec![T::ZERO; d], d),
            a,
            bt: transposed(&mean),
            b_norms,
        }
    }
}

/// The mean of the rows (d wide), summed in f64. The dot-product form
/// shifts both sets by B's mean so that the norms stay small enough not to
/// cancel; distances are unchanged.
fn row_mean<T: Real>(rows: &[T], d: usize) -> Vec<f64> {
    let mut mean = vec![0.0f64; d];
    for row in rows.chunks_exact(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += v.to_f64());
    }
    let n = (rows.len() / d).max(1) as f64;
    mean.iter().map(|m| m / n).collect()
}

/// The rows (d wide) less `shift`.
fn rows_less<T: Real>(rows: &[T], shift: &[T], d: usize) -> Vec<T> {
    rows.chunks_exact(d)
        .flat_map(|row| row.iter().zip(shift).map(|(&v, &m)| v - m))
        .collect()
}

/// Squared norms of the rows (d wide) less `shift`.
fn norms_less<T: Real>(rows: &[T], shift: &[T], d: usize) -> Vec<T> {
    rows.chunks_exact(d)
        .map(|r| {
            r.iter()
                .zip(shift)
                .fold(T::ZERO, |s, (&v, &m)| (v - m).mul_add(v - m, s))
        })
        .collect()
}

/// [`Tiles::fill`] for Gaussian kernels through dot products: the tile's
/// A_I B_Jᵀ by one GEMM, then exp(−g max(0, ‖a‖² + ‖b‖² − 2a·b)), the Γ
/// weight and the zero diagonal. Rows are `TILE` wide (B's last tile is
/// zero-padded), as in [`fill_tile`].
fn fill_dot<T: Real>(
    t: &Tiles<'_, T>,
    f: &DotForm<T>,
    i0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    k: &mut [T],
) {
    let d = t.d;
    let k = &mut k[..rows * TILE];
    k.fill(T::ZERO);
    gemm_acc(
        rows,
        d,
        TILE,
        &f.a[i0 * d..],
        d,
        1,
        &f.bt[j0 * d..],
        TILE,
        k,
        TILE,
    );
    dot_to_kernel_at(t.level, t, f, i0, j0, cols, k);
}

simd_dispatch! {
    /// [`dot_to_kernel`] for a SIMD level.
    fn dot_to_kernel_at<T>(t: &Tiles<'_, T>, f: &DotForm<T>, i0: usize, j0: usize, cols: usize, k: &mut [T]) -> () = dot_to_kernel
}

/// The dot products of a tile (rows of `TILE`) to Gaussian kernel values,
/// Γ weights and the zero diagonal.
#[inline(always)]
fn dot_to_kernel<T: Real>(
    t: &Tiles<'_, T>,
    f: &DotForm<T>,
    i0: usize,
    j0: usize,
    cols: usize,
    k: &mut [T],
) {
    let bn = &f.b_norms[j0..j0 + TILE];
    let two = T::from_f64(2.0);
    for (li, kr) in k.chunks_exact_mut(TILE).enumerate() {
        let i = i0 + li;
        let an = f.a_norms[i];
        match T::PRECISION {
            Precision::F64 => {
                for (v, &b) in kr.iter_mut().zip(bn) {
                    let s = (an + b - two * *v).max(T::ZERO);
                    *v = T::from_f64(exp_neg(s.to_f64() * t.g));
                }
            }
            Precision::F32 => {
                let g = t.g as f32;
                let kr: &mut [f32] = bytemuck::cast_slice_mut(kr);
                let bn: &[f32] = bytemuck::cast_slice(bn);
                let an = an.to_f64() as f32;
                for (v, &b) in kr.iter_mut().zip(bn) {
                    *v = exp_neg_f32((an + b - 2.0 * *v).max(0.0) * g);
                }
            }
        }
        t.weigh(i, j0, &mut kr[..cols]);
    }
}

simd_dispatch! {
    /// [`fill_tile`] for a SIMD level: one dispatch per tile.
    fn fill_at<T>(t: &Tiles<'_, T>, i0: usize, rows: usize, j0: usize, cols: usize, k: &mut [T]) -> () = fill_tile
}

/// [`Tiles::fill`]. Each row's 64 squared distances accumulate in a fixed
/// array the compiler keeps in vector registers (a slice of unknown length
/// costs loop set-up per feature, which dominated for the small d of the
/// ISM layers), then the exponential and the Γ weight go in one pass.
#[inline(always)]
fn fill_tile<T: Real>(
    t: &Tiles<'_, T>,
    i0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    k: &mut [T],
) {
    let d = t.d;
    let bt = &t.bt[j0 * d..(j0 + TILE) * d];
    for li in 0..rows {
        let i = i0 + li;
        // Whole tile rows (B's last tile is zero-padded); the GEMM reads
        // only the first `cols`.
        let kr: &mut [T; TILE] = (&mut k[li * TILE..(li + 1) * TILE])
            .try_into()
            .expect("tile row");
        let ai = &t.a[i * d..(i + 1) * d];
        let mut acc = [T::ZERO; TILE];
        match t.spec.func {
            Func::Gauss { .. } => {
                for (c, &av) in ai.iter().enumerate() {
                    let col: &[T; TILE] = bt[c * TILE..(c + 1) * TILE].try_into().expect("tile");
                    for j in 0..TILE {
                        let v = av - col[j];
                        acc[j] += v * v;
                    }
                }
                match T::PRECISION {
                    Precision::F64 => {
                        for j in 0..TILE {
                            kr[j] = T::from_f64(exp_neg(acc[j].to_f64() * t.g));
                        }
                    }
                    Precision::F32 => {
                        let g = t.g as f32;
                        let acc: &[f32; TILE] = bytemuck::cast_ref(&acc);
                        let out: &mut [f32; TILE] = bytemuck::cast_mut(kr);
                        for j in 0..TILE {
                            out[j] = exp_neg_f32(acc[j] * g);
                        }
                    }
                }
            }
            Func::Dist => dist_row(ai, bt, TILE, kr),
        }
        t.weigh(i, j0, &mut kr[..cols]);
    }
}

/// Kernel-matrix product `out = (w ∘ f(A, B)) M` (see
/// the module doc), m × r row-major, in row tiles of A whose output
/// fits one binding.
#[allow(clippy::too_many_arguments)]
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    m: &[f64],
    r: usize,
    spec: &Spec,
) -> Result<Vec<f64>> {
    let rows = ctx.fit_rows(prec, spec.width(r));
    gpu_tiled(ctx, prec, a, b, d, m, r, spec, rows)
}

/// The product of the module doc in tiles of `tile_rows` rows of A.
#[allow(clippy::too_many_arguments)]
pub fn gpu_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    m: &[f64],
    r: usize,
    spec: &Spec,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    let span = rows_of_b_per_dispatch(ctx.summary().software, d);
    gpu_split(ctx, prec, a, b, d, m, r, spec, tile_rows, span)
}

/// [`gpu_tiled`] with each tile's sums over B split into dispatches of
/// `b_rows` rows of B (rounded up to 16), which resume from the output:
/// the same bits as one dispatch.
#[allow(clippy::too_many_arguments)]
pub fn gpu_split(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    m: &[f64],
    r: usize,
    spec: &Spec,
    tile_rows: usize,
    b_rows: usize,
) -> Result<Vec<f64>> {
    let (na, _) = shape(a, b, d, m, r, spec);
    if na == 0 || spec.width(r) == 0 {
        return Ok(vec![]);
    }
    // An empty M still needs a binding.
    let mb = ctx.upload_real(if m.is_empty() { &[0.0] } else { m }, prec)?;
    split_with_m(ctx, prec, (a, b, d), &mb, r, spec, tile_rows, b_rows)
}

/// K(A, A)·M ([`gpu`] with B = A) for an M held on the device in one
/// buffer (`m`, A's rows of `r` columns, in `prec`): M crosses to the
/// device once for all the products that use it (the ISM's [A | 1],
/// fixed for a layer's iterations).
pub fn gpu_held_m(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    d: usize,
    m: &RowTiles,
    spec: &Spec,
) -> Result<Vec<f64>> {
    let (na, _) = shape::<f64>(a, a, d, &[], 0, spec);
    let r = m.cols();
    assert!(
        m.rows() == na && m.tiles().len() <= 1 && m.precision() == prec,
        "M is A's rows, in one buffer of the working precision"
    );
    if na == 0 || spec.width(r) == 0 {
        return Ok(vec![]);
    }
    let span = rows_of_b_per_dispatch(ctx.summary().software, d);
    let rows = ctx.fit_rows(prec, spec.width(r));
    split_with_m(ctx, prec, (a, a, d), &m.tiles()[0], r, spec, rows, span)
}

/// Φ's Laplacian form on the device: with M = [X | 1] held (n rows, one
/// buffer) and Xᵀ held (`mt`: r rows of n, one buffer), returns
/// Xᵀ·[(Diag(K1) − K)P | K1] (r × (c + 1), row-major) for K = w ∘ f(Z, Z)
/// of `spec` (no squares column) on the rows Z = M·B (B: (r + 1) × q,
/// row-major), and P = X (c = r), or with `y` = (Y, c) (r × c, row-major)
/// P = X·Y, for the product Φ·Y without Φ. Z and P never leave the
/// device: Z and its norms, P, the kernel product with [P | 1], the form
/// ([`super::laplacian`]) and the product by Xᵀ ([`super::dense`]) run in
/// one submit; only B, Y, the labels and a few scalars go in and the
/// r × (c + 1) result comes back. Kernels of Z are those of Z shifted by
/// any row vector, so a caller keeps the norms small (as the host path's
/// shift by the rows' mean does) by a last row of B that centres Z. None
/// where an n-row operand does not fit one binding (the caller then takes
/// [`gpu_held_m`] or the host path).
pub fn gpu_laplacian_form(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    (m, mt): (&RowTiles, &RowTiles),
    (b, q): (&[f64], usize),
    y: Option<(&[f64], usize)>,
    spec: &Spec,
) -> Result<Option<Vec<f64>>> {
    let (n, w, r) = (m.rows(), m.cols(), m.cols().saturating_sub(1));
    let c = y.map_or(r, |(_, c)| c);
    check_labels(n, n, spec);
    assert!(
        mt.rows() == r && mt.cols() == n && b.len() == w * q && !spec.squares,
        "M is [X | 1], Xᵀ its r rows, B (r + 1) × q"
    );
    assert!(y.is_none_or(|(y, c)| y.len() == r * c), "Y is r × c");
    assert!(
        m.tiles().len() <= 1 && mt.tiles().len() <= 1,
        "M and Xᵀ in one buffer each"
    );
    if n == 0 || r == 0 || c == 0 {
        return Ok(Some(vec![0.0; r * (c + 1)]));
    }
    if ctx.fit_rows(prec, w.max(q).max(c + 1)) < n {
        return Ok(None);
    }
    let (mb, identity) = (&m.tiles()[0], super::dense::Act::Identity);
    // Z = M·B, then its squared norms after the spec's scalars.
    let zb = ctx.alloc(n * q, Elem::Real(prec))?;
    let rows_ep = super::dense::Epilogue::upload(ctx, prec, b, &vec![0.0; q], identity)?;
    let mut all = super::dense::dispatch(ctx, prec, &rows_ep, (n, w, q), mb, &zb)?;
    let header = spec.scalars();
    let scal = ctx.alloc(header.len() + n, Elem::Real(prec))?;
    scal.write_real_at(0, &header);
    let (norms, _norms_uniform) =
        super::row_norms::prepare(ctx, prec, &zb, (n, q), &scal, header.len())?;
    all.push(norms);
    // [P | 1] = M·[Y 0; 0 0] + (0, …, 0, 1) where P = X·Y.
    let py = match y {
        None => None,
        Some((y, c)) => {
            let mut yb = vec![0.0; w * (c + 1)];
            for (row, yr) in yb.chunks_mut(c + 1).zip(y.chunks(c)) {
                row[..c].copy_from_slice(yr);
            }
            let mut ones = vec![0.0; c + 1];
            ones[c] = 1.0;
            let ep = super::dense::Epilogue::upload(ctx, prec, &yb, &ones, identity)?;
            let pb = ctx.alloc(n * (c + 1), Elem::Real(prec))?;
            all.extend(super::dense::dispatch(
                ctx,
                prec,
                &ep,
                (n, w, c + 1),
                mb,
                &pb,
            )?);
            Some(pb)
        }
    };
    let pm = py.as_ref().unwrap_or(mb);
    let span = rows_of_b_per_dispatch(ctx.summary().software, q);
    let bound = Bound::assemble(
        ctx,
        (scal, zb, None),
        pm,
        (n, n, q, c + 1),
        (header.len(), header.len()),
        spec,
        span,
    )?;
    let lb = ctx.alloc(n * (c + 1), Elem::Real(prec))?;
    let (product, _product_uniforms) = bound.dispatches(ctx, prec, 0..n, &lb)?;
    all.extend(product);
    let (form, _form_uniform) = super::laplacian::prepare(ctx, prec, pm, &lb, n, c)?;
    all.push(form);
    let ep = super::dense::Epilogue::with_device_b(ctx, prec, lb, &vec![0.0; c + 1], identity)?;
    let out = ctx.alloc(r * (c + 1), Elem::Real(prec))?;
    all.extend(super::dense::dispatch(
        ctx,
        prec,
        &ep,
        (r, n, c + 1),
        &mt.tiles()[0],
        &out,
    )?);
    ctx.run_all(&all)?;
    out.read_real().map(Some)
}

/// [`gpu_split`] with M bound from `mb`.
#[allow(clippy::too_many_arguments)]
fn split_with_m(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    (a, b, d): (&[f64], &[f64], usize),
    mb: &GpuBuffer,
    r: usize,
    spec: &Spec,
    tile_rows: usize,
    b_rows: usize,
) -> Result<Vec<f64>> {
    let na = a.len() / d;
    let w = spec.width(r);
    // This part's rows of A (the others stay zero: parts add up exactly).
    let mine = spec.part_of(na);
    let tile_rows = tile_rows.clamp(1, na);
    let bound = Bound::upload(ctx, prec, (a, b, d), mb, r, spec, b_rows)?;
    let ob = ctx.alloc(tile_rows * w, Elem::Real(prec))?;
    let mut out = vec![0.0; mine.start * w];
    out.reserve(na * w);
    let mut row0 = mine.start;
    // One submit and readback per tile (one dispatch, or one per span of
    // B's rows); the kernel tiles are built on the fly.
    while row0 < mine.end {
        let rows = tile_rows.min(mine.end - row0);
        let (dispatches, _uniforms) = bound.dispatches(ctx, prec, row0..row0 + rows, &ob)?;
        ctx.run_all(&dispatches)?;
        out.extend(ob.read_real_range(0, rows * w)?);
        row0 += rows;
    }
    out.resize(na * w, 0.0);
    Ok(out)
}

/// A product's operands on the device, bound for its tiles' dispatches.
struct Bound<'m> {
    scal: GpuBuffer,
    ab: GpuBuffer,
    bb: Option<GpuBuffer>,
    mb: &'m GpuBuffer,
    lb: GpuBuffer,
    /// The parameters every dispatch shares.
    base: Params,
    /// Rows of B per dispatch (a multiple of 16).
    span: usize,
    w: usize,
}

impl<'m> Bound<'m> {
    /// Sends A, B (once where they are the same rows), the scalars and the
    /// labels.
    fn upload(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        (a, b, d): (&[f64], &[f64], usize),
        mb: &'m GpuBuffer,
        r: usize,
        spec: &Spec,
        b_rows: usize,
    ) -> Result<Self> {
        let (na, nb) = (a.len() / d, b.len() / d);
        let gauss = matches!(spec.func, Func::Gauss { .. });
        let mut scalars = spec.scalars();
        // A product of rows with themselves (every Ψ of an ISM iteration)
        // sends them, their norms and their labels once and reads them twice.
        let same = std::ptr::eq(a, b);
        let norm_a = scalars.len();
        let norm_b = if same { norm_a } else { norm_a + na };
        let (ab, bb) = if gauss {
            // The dot-product form on rows shifted by B's mean (distances
            // are unchanged, and the norms stay small enough not to cancel).
            let mean = row_mean(b, d);
            let zero = vec![0.0; d];
            let a = rows_less(a, &mean, d);
            let norms = norms_less(&a, &zero, d);
            scalars.extend(&norms);
            let ab = ctx.upload_real(&a, prec)?;
            if same {
                (ab, None)
            } else {
                let b = rows_less(b, &mean, d);
                scalars.extend(norms_less(&b, &zero, d));
                (ab, Some(ctx.upload_real(&b, prec)?))
            }
        } else {
            let bb = (!same).then(|| ctx.upload_real(b, prec)).transpose()?;
            (ctx.upload_real(a, prec)?, bb)
        };
        let scal = ctx.upload_real(&scalars, prec)?;
        Self::assemble(
            ctx,
            (scal, ab, bb),
            mb,
            (na, nb, d, r),
            (norm_a, norm_b),
            spec,
            b_rows,
        )
    }

    /// The operands already on the device: the scalars (with the norms at
    /// `norm_a` and `norm_b`), A's rows and B's (None: the same rows) for
    /// `na` and `nb` rows of `d` values and an M of `r` columns; sends the
    /// labels.
    fn assemble(
        ctx: &Arc<GpuContext>,
        (scal, ab, bb): (GpuBuffer, GpuBuffer, Option<GpuBuffer>),
        mb: &'m GpuBuffer,
        (na, nb, d, r): (usize, usize, usize, usize),
        (norm_a, norm_b): (usize, usize),
        spec: &Spec,
        b_rows: usize,
    ) -> Result<Self> {
        let same = bb.is_none();
        let (labels, lb_off): (Vec<u32>, usize) = match spec.gamma {
            Some(g) if same && std::ptr::eq(g.la, g.lb) => (g.la.to_vec(), 0),
            Some(g) => (g.la.iter().chain(g.lb).copied().collect(), na),
            None => (vec![0], 0),
        };
        let lb = ctx.upload_u32(&labels)?;
        let base = Params {
            rows: 0,
            row0: 0,
            n: nb as u32,
            d: d as u32,
            r: r as u32,
            func: matches!(spec.func, Func::Dist) as u32,
            zero_diag: spec.zero_diag as u32,
            use_gamma: spec.gamma.is_some() as u32,
            lb_off: lb_off as u32,
            squares: spec.squares as u32,
            norm_a: norm_a as u32,
            norm_b: norm_b as u32,
            j_begin: 0,
            j_end: 0,
            resume: 0,
            pad: 0,
        };
        Ok(Bound {
            scal,
            ab,
            bb,
            mb,
            lb,
            base,
            span: b_rows.max(1).div_ceil(16).saturating_mul(16),
            w: spec.width(r),
        })
    }

    /// The dispatches of A's `rows` into `ob` (row 0 of `ob` is the first
    /// of them): one, or one per span of B's rows; with their uniforms.
    fn dispatches(
        &self,
        ctx: &Arc<GpuContext>,
        prec: Precision,
        rows: std::ops::Range<usize>,
        ob: &GpuBuffer,
    ) -> Result<(Vec<Dispatch>, Vec<GpuBuffer>)> {
        let nb = self.base.n as usize;
        let (ti, tc) = gpu_tile(self.w);
        let groups = rows.len().div_ceil(ti) * self.w.div_ceil(tc);
        let bb = self.bb.as_ref().unwrap_or(&self.ab);
        let mut uniforms = Vec::new();
        let mut dispatches = Vec::new();
        // An empty B still takes one dispatch, which writes the zeros.
        for j_begin in (0..nb.max(1)).step_by(self.span.min(nb).max(1)) {
            let params = ctx.uniform(&Params {
                rows: rows.len() as u32,
                row0: rows.start as u32,
                j_begin: j_begin as u32,
                j_end: nb.min(j_begin.saturating_add(self.span)) as u32,
                resume: (j_begin > 0) as u32,
                ..self.base
            })?;
            dispatches.push(ctx.prepare(
                &KERNEL,
                prec,
                &[
                    (&params).into(),
                    (&self.scal).into(),
                    (&self.ab).into(),
                    bb.into(),
                    self.mb.into(),
                    (&self.lb).into(),
                    ob.into(),
                ],
                (groups * KERNEL.workgroup as usize) as u64,
            )?);
            uniforms.push(params);
        }
        Ok((dispatches, uniforms))
    }
}
