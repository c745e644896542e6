//! Dense layer product with an activation epilogue:
//!
//! ```text
//! out[i][j] = act(Σ_l a[i][l] b[l][j] + bias[j]),  act ∈ {id, a_α, a_α⁻¹}
//! a_α(v) = v (v ≥ 0), α v (v < 0)   (leaky ReLU; a_α⁻¹ divides by α)
//! ```
//!
//! StarNet's batched products: decoding (H Wᵀ + c then a_α), and the latent
//! solve as one product with the host's pseudo-inverse (Ẑ Pᵀ − P c). Rows
//! are independent, so the GPU path runs row tiles that fit one binding.
//! Twin of `shaders/dense.wgsl`.

use super::par::parallel_enough;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, Kernel, RowTiles};
use crate::real::{Precision, Real};
use rayon::prelude::*;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "dense",
    source: include_str!("../../shaders/dense.wgsl"),
    deps: &[],
    entry: "dense",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
    ],
    workgroup: 256,
    lanes: 1,
};

/// Output rows and columns per GPU workgroup.
pub const GPU_TILE: usize = 64;

/// Uniform parameters (matches `DenseParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of A in this tile.
    pub rows: u32,
    /// Inner dimension.
    pub k: u32,
    /// Columns of B.
    pub m: u32,
    /// 0 identity, 1 leaky ReLU, 2 its inverse.
    pub act: u32,
    /// First of this dispatch's inner indices (a multiple of 16).
    pub l_begin: u32,
    /// End of this dispatch's inner indices.
    pub l_end: u32,
    /// 1 = the sums go on from the output's.
    pub resume: u32,
    /// 1 = add the bias and apply the activation at the end.
    pub finish: u32,
}

/// Inner indices one dispatch takes ([`crate::gpu::loop_span`]): counting
/// every loop of a 16-wide step as written, 389 iterations, so on a
/// software adapter a long product (an SGD weight gradient over a large
/// batch) is split over dispatches that resume from the output: the same
/// sums in the same order. StarNet's k ≤ 784 stays one dispatch.
pub fn inner_per_dispatch(software: bool) -> usize {
    crate::gpu::loop_span(software, 389, 16)
}

/// The epilogue activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// None.
    Identity,
    /// Leaky ReLU with negative slope α.
    Leaky(f64),
    /// Its inverse.
    InvLeaky(f64),
}

impl Act {
    /// The shader's code and α.
    pub fn code(self) -> (u32, f64) {
        match self {
            Act::Identity => (0, 1.0),
            Act::Leaky(a) => (1, a),
            Act::InvLeaky(a) => (2, a),
        }
    }

    /// Applies it to one value.
    #[inline(always)]
    pub fn apply<T: Real>(self, v: T) -> T {
        match self {
            Act::Identity => v,
            Act::Leaky(a) if v < T::ZERO => v * T::from_f64(a),
            Act::InvLeaky(a) if v < T::ZERO => v / T::from_f64(a),
            _ => v,
        }
    }
}

/// Checks the shapes; returns the rows of A.
pub fn shape<T>(a: &[T], k: usize, b: &[T], m: usize, bias: &[T]) -> usize {
    assert_eq!(b.len(), k * m, "B is k × m");
    assert_eq!(bias.len(), m, "one bias per column");
    if k == 0 {
        return 0;
    }
    assert!(a.len().is_multiple_of(k), "rows of length k");
    a.len() / k
}

/// Plain-loop f64 twin.
pub fn reference(a: &[f64], k: usize, b: &[f64], m: usize, bias: &[f64], act: Act) -> Vec<f64> {
    let n = shape(a, k, b, m, bias);
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut s = 0.0;
            for l in 0..k {
                s += a[i * k + l] * b[l * m + j];
            }
            out[i * m + j] = act.apply(s + bias[j]);
        }
    }
    out
}

/// CPU backend: row blocks (in parallel when large), a GEMM each, then the
/// bias and activation.
pub fn cpu<T: Real>(a: &[T], k: usize, b: &[T], m: usize, bias: &[T], act: Act, out: &mut [T]) {
    let n = shape(a, k, b, m, bias);
    assert_eq!(out.len(), n * m);
    const BLOCK: usize = 256;
    let block = |(bi, ob): (usize, &mut [T])| {
        let rows = ob.len() / m.max(1);
        let i0 = bi * BLOCK;
        ob.fill(T::ZERO);
        gemm_acc(rows, k, m, &a[i0 * k..], k, 1, b, m, ob, m);
        for row in ob.chunks_mut(m.max(1)) {
            for (o, &c) in row.iter_mut().zip(bias) {
                *o = act.apply(*o + c);
            }
        }
    };
    if m == 0 {
        return;
    }
    if parallel_enough((n * k * m) >> 4) {
        out.par_chunks_mut(BLOCK * m).enumerate().for_each(block);
    } else {
        out.chunks_mut(BLOCK * m).enumerate().for_each(block);
    }
}

/// C += A · B: A is rows × inner with strides (`rsa`, `csa`), B inner × cols
/// with row stride `rsb`, C rows × cols with row stride `rsc` (matrixmultiply's
/// blocked GEMM, f32 or f64).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc<T: Real>(
    rows: usize,
    inner: usize,
    cols: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    c: &mut [T],
    rsc: usize,
) {
    gemm_strided(rows, inner, cols, a, (rsa, csa), b, (rsb, 1), c, rsc);
}

/// [`gemm_acc`] with B's column stride too.
#[allow(clippy::too_many_arguments)]
fn gemm_strided<T: Real>(
    rows: usize,
    inner: usize,
    cols: usize,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    c: &mut [T],
    rsc: usize,
) {
    let last = |r: usize, rs: usize, cc: usize, cs: usize| (r - 1) * rs + (cc - 1) * cs + 1;
    if rows == 0 || inner == 0 || cols == 0 {
        return;
    }
    assert!(a.len() >= last(rows, rsa, inner, csa));
    assert!(b.len() >= last(inner, rsb, cols, csb) && c.len() >= last(rows, rsc, cols, 1));
    // SAFETY: the asserts bound every element the strides reach, and c is a
    // distinct mutable borrow.
    unsafe {
        match T::PRECISION {
            Precision::F64 => {
                let (a, b): (&[f64], &[f64]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
                let c: &mut [f64] = bytemuck::cast_slice_mut(c);
                matrixmultiply::dgemm(
                    rows,
                    inner,
                    cols,
                    1.0,
                    a.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    1.0,
                    c.as_mut_ptr(),
                    rsc as isize,
                    1,
                );
            }
            Precision::F32 => {
                let (a, b): (&[f32], &[f32]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
                let c: &mut [f32] = bytemuck::cast_slice_mut(c);
                matrixmultiply::sgemm(
                    rows,
                    inner,
                    cols,
                    1.0,
                    a.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    1.0,
                    c.as_mut_ptr(),
                    rsc as isize,
                    1,
                );
            }
        }
    }
}

/// A product X · Y (m × k times k × m, strides as (row, column)) known to
/// be symmetric, such as ZᵀZ or AᵀLA: only the 64 × 64 blocks on and above
/// the diagonal are multiplied (half the work), in parallel, and mirrored.
/// Returns the m × m result row-major (exactly symmetric).
pub(crate) fn symmetric_product<T: Real>(
    m: usize,
    k: usize,
    x: &[T],
    xs: (usize, usize),
    y: &[T],
    ys: (usize, usize),
) -> Vec<T> {
    const BLOCK: usize = 64;
    let nb = m.div_ceil(BLOCK);
    let pairs: Vec<(usize, usize)> = (0..nb).flat_map(|i| (i..nb).map(move |j| (i, j))).collect();
    let block = |&(bi, bj): &(usize, usize)| {
        let (i0, j0) = (bi * BLOCK, bj * BLOCK);
        let (rows, cols) = (BLOCK.min(m - i0), BLOCK.min(m - j0));
        let mut out = vec![T::ZERO; rows * cols];
        gemm_strided(
            rows,
            k,
            cols,
            &x[i0 * xs.0..],
            xs,
            &y[j0 * ys.1..],
            ys,
            &mut out,
            cols,
        );
        out
    };
    let blocks: Vec<Vec<T>> = if parallel_enough((m * m * k) >> 5) {
        pairs.par_iter().map(block).collect()
    } else {
        pairs.iter().map(block).collect()
    };
    let mut g = vec![T::ZERO; m * m];
    for (&(bi, bj), out) in pairs.iter().zip(&blocks) {
        let (i0, j0) = (bi * BLOCK, bj * BLOCK);
        let cols = BLOCK.min(m - j0);
        for (li, row) in out.chunks(cols).enumerate() {
            for (lj, &v) in row.iter().enumerate() {
                g[(i0 + li) * m + j0 + lj] = v;
                g[(j0 + lj) * m + i0 + li] = v;
            }
        }
    }
    g
}

/// Dense product with epilogue `act(A B + bias)` (see the module doc), in row
/// tiles of A whose input and output fit one binding each.
#[allow(clippy::too_many_arguments)]
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    k: usize,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: Act,
) -> Result<Vec<f64>> {
    let rows = ctx.fit_rows(prec, k.max(m));
    gpu_tiled(ctx, prec, a, k, b, m, bias, act, rows)
}

/// The operands a product with an epilogue shares over its row tiles: the
/// right-hand operand (B, or a conv-unpool layer's kernels), the bias and
/// the activation's slope, for kernels that bind (params, slope, rows, B,
/// bias, out).
pub(crate) struct Epilogue {
    scal: GpuBuffer,
    b: GpuBuffer,
    bias: GpuBuffer,
    /// The activation's code (`Act::code`).
    pub code: u32,
}

impl Epilogue {
    /// Uploads B, the bias and the slope.
    pub fn upload(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        b: &[f64],
        bias: &[f64],
        act: Act,
    ) -> Result<Self> {
        Self::with_device_b(ctx, prec, ctx.upload_real(b, prec)?, bias, act)
    }

    /// B already on the device (moved in: `k × m` rows), with the bias and
    /// slope uploaded.
    pub fn with_device_b(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        b: GpuBuffer,
        bias: &[f64],
        act: Act,
    ) -> Result<Self> {
        let (code, alpha) = act.code();
        Ok(Epilogue {
            scal: ctx.upload_real(&[alpha], prec)?,
            b,
            bias: ctx.upload_real(bias, prec)?,
            code,
        })
    }

    /// The dispatch of `kernel` with `params` from `rows` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        ctx: &Arc<GpuContext>,
        prec: Precision,
        kernel: &Kernel,
        params: &P,
        rows: &GpuBuffer,
        out: &GpuBuffer,
        threads: u64,
    ) -> Result<Dispatch> {
        let params = ctx.uniform(params)?;
        let binds = [&params, &self.scal, rows, &self.b, &self.bias, out];
        let binds: Vec<_> = binds.iter().map(|&b| b.into()).collect();
        ctx.prepare(kernel, prec, &binds, threads)
    }
}

/// The dispatches of `out = act(a B + bias)` for `rows` rows of `a`: one,
/// or on software adapters one per span of the inner dimension (see
/// [`inner_per_dispatch`]).
pub(crate) fn dispatch(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    ep: &Epilogue,
    (rows, k, m): (usize, usize, usize),
    a: &GpuBuffer,
    out: &GpuBuffer,
) -> Result<Vec<Dispatch>> {
    let groups = rows.div_ceil(GPU_TILE) * m.div_ceil(GPU_TILE);
    let threads = (groups * KERNEL.workgroup as usize) as u64;
    let span = inner_per_dispatch(ctx.summary().software);
    // k = 0 still takes one dispatch, which writes act(bias).
    (0..k.max(1))
        .step_by(span.min(k).max(1))
        .map(|begin| {
            let end = k.min(begin.saturating_add(span));
            let params = Params {
                rows: rows as u32,
                k: k as u32,
                m: m as u32,
                act: ep.code,
                l_begin: begin as u32,
                l_end: end as u32,
                resume: (begin > 0) as u32,
                finish: (end >= k) as u32,
            };
            ep.dispatch(ctx, prec, &KERNEL, &params, a, out, threads)
        })
        .collect()
}

/// The module doc's product in tiles of `tile_rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn gpu_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    k: usize,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: Act,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    let n = shape(a, k, b, m, bias);
    if n == 0 || m == 0 {
        return Ok(vec![0.0; n * m]);
    }
    let tile_rows = tile_rows.clamp(1, n);
    let ep = Epilogue::upload(ctx, prec, b, bias, act)?;
    let ab = ctx.alloc(tile_rows * k, Elem::Real(prec))?;
    let ob = ctx.alloc(tile_rows * m, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * m);
    let mut row0 = 0;
    while row0 < n {
        let rows = tile_rows.min(n - row0);
        ab.write_real_at(0, &a[row0 * k..(row0 + rows) * k]);
        ctx.run_all(&dispatch(ctx, prec, &ep, (rows, k, m), &ab, &ob)?)?;
        out.extend(ob.read_real_range(0, rows * m)?);
        row0 += rows;
    }
    Ok(out)
}

/// The product of rows held on the device: `act(A B + bias)` tile by tile
/// of A (k columns), all tiles in one submit, the result held in tiles of
/// the same height. Each output tile must fit one binding
/// (`ctx.fit_rows(prec, m) ≥ a.tile_rows()`).
pub fn gpu_rows(
    ctx: &Arc<GpuContext>,
    a: &RowTiles,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: Act,
) -> Result<RowTiles> {
    let (prec, k) = (a.precision(), a.cols());
    assert_eq!(b.len(), k * m, "B is k × m");
    assert_eq!(bias.len(), m, "one bias per output column");
    assert!(
        ctx.fit_rows(prec, m) >= a.tile_rows(),
        "output tiles fit one binding"
    );
    let out = RowTiles::alloc(ctx, prec, a.rows(), m, a.tile_rows())?;
    if a.rows() == 0 || m == 0 {
        return Ok(out);
    }
    let ep = Epilogue::upload(ctx, prec, b, bias, act)?;
    let disps = (0..a.tiles().len())
        .map(|t| {
            let rows = (a.tile(t).len(), k, m);
            dispatch(ctx, prec, &ep, rows, &a.tiles()[t], &out.tiles()[t])
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.run_all(&disps.into_iter().flatten().collect::<Vec<_>>())?;
    Ok(out)
}
