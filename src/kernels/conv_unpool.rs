//! Conv-unpool layer operators (StarNet). A layer maps h (c_in × side² per
//! item) by a stride-1 k × k convolution with zero "same" padding
//! (r = (k − 1)/2) to c_out·u² channels, then depth-to-space (u × u):
//!
//! ```text
//! y[o][p][q]    = b_o + Σ_{ci,a,b} K[o][ci][a][b] h[ci][p+a−r][q+b−r]
//! out[D(o,p,q)] = y[o][p][q],   D = co·S² + (u p + s)·S + u q + t,
//!                 o = co·u² + s·u + t,  S = u·side
//! ```
//!
//! It is linear in h: `W h + c` for a structured W (d_out × d_in). Three
//! operators, each a WGSL entry point of `shaders/conv_unpool.wgsl` with a
//! plain-loop f64 twin here:
//! - forward: act(W h + c) per item (decoding);
//! - transpose: Wᵀ z per item (the latent solve's right-hand side, then one
//!   product with the host's (WᵀW)⁻¹);
//! - normal equations per kernel: with X = [patch, 1], Y = [patch, 1, ẑ_o],
//!   C = Σ over items and positions of Xᵀ Y ((P+1) × (P+1+oc), P = c_in·k²),
//!   shared by every output channel o. Chunks of items give partial sums that
//!   the host adds (the allreduce seam).
//!
//! The CPU backend runs forward and transpose as GEMMs with the materialized
//! W (dense BLAS-like products beat the direct loops there) and the normal
//! equations as [`super::normal_eq`] on gathered patches.

use super::dense::{self, Act, Epilogue};
use super::normal_eq;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, Kernel, RowTiles};
use crate::real::Precision;
use crate::real::Real;
use rayon::prelude::*;
use std::sync::Arc;

const BINDS: &[Bind] = &[
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
];

/// act(W h + c): one invocation per output element.
pub const FORWARD: Kernel = Kernel {
    name: "conv_unpool",
    source: include_str!("../../shaders/conv_unpool.wgsl"),
    deps: &[],
    entry: "conv_forward",
    binds: BINDS,
    workgroup: 64,
    lanes: 1,
};

/// Wᵀ z: one invocation per latent element.
pub const TRANSPOSE: Kernel = Kernel {
    entry: "conv_transpose",
    ..FORWARD
};

/// Per-kernel normal equations: 16 × 16 tiles of C per workgroup.
pub const NORMAL_EQ: Kernel = Kernel {
    entry: "conv_normal_eq",
    workgroup: 256,
    ..FORWARD
};

/// Tile side of [`NORMAL_EQ`].
pub const GPU_TILE: usize = 16;

/// Uniform parameters (matches `ConvParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items in this chunk.
    pub items: u32,
    /// Input channels.
    pub c_in: u32,
    /// Output channels.
    pub c_out: u32,
    /// Kernel side.
    pub k: u32,
    /// Unpooling factor.
    pub u: u32,
    /// Input side.
    pub side: u32,
    /// Forward epilogue: 0 identity, 1 leaky ReLU, 2 its inverse.
    pub act: u32,
    /// Padding.
    pub pad: u32,
    /// Normal equations: this dispatch's first (item, position) row.
    pub row_begin: u32,
    /// Normal equations: the end of this dispatch's rows.
    pub row_end: u32,
    /// Normal equations: 1 = the sums go on from the output's.
    pub resume: u32,
    /// Padding.
    pub pad1: u32,
}

impl Params {
    /// The parameters of `items` items of a layer.
    pub fn new(sh: &ConvShape, items: usize, act: u32) -> Params {
        Params {
            items: items as u32,
            c_in: sh.c_in as u32,
            c_out: sh.c_out as u32,
            k: sh.k as u32,
            u: sh.u as u32,
            side: sh.side as u32,
            act,
            pad: 0,
            row_begin: 0,
            row_end: u32::MAX,
            resume: 0,
            pad1: 0,
        }
    }
}

/// (item, position) rows one dispatch of [`NORMAL_EQ`] takes
/// ([`crate::gpu::loop_span`]): an invocation runs at most 17 loop
/// iterations per 16 rows (the slab's 16 products), so on a software
/// adapter a chunk is split over dispatches that resume from the output:
/// the same sums in the same order. A 14 × 14 layer's chunk of 8,192 items
/// is 1.6 million rows.
pub fn normal_eq_rows_per_dispatch(software: bool) -> usize {
    crate::gpu::loop_span(software, 17, GPU_TILE)
}

/// One conv-unpool layer's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels (after depth-to-space).
    pub c_out: usize,
    /// Kernel side (odd).
    pub k: usize,
    /// Unpooling factor.
    pub u: usize,
    /// Input side (the output side is u·side).
    pub side: usize,
}

impl ConvShape {
    /// Input width c_in·side².
    pub fn d_in(&self) -> usize {
        self.c_in * self.side * self.side
    }

    /// Output width c_out·(u·side)².
    pub fn d_out(&self) -> usize {
        let s = self.u * self.side;
        self.c_out * s * s
    }

    /// Convolution output channels c_out·u².
    pub fn conv_channels(&self) -> usize {
        self.c_out * self.u * self.u
    }

    /// Patch length c_in·k².
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Index in the output vector of conv channel o at (p, q).
    pub fn out_index(&self, o: usize, p: usize, q: usize) -> usize {
        let (uu, s_out) = (self.u * self.u, self.u * self.side);
        let (co, rem) = (o / uu, o % uu);
        let (s, t) = (rem / self.u, rem % self.u);
        co * s_out * s_out + (self.u * p + s) * s_out + self.u * q + t
    }

    /// Visits every (conv channel o, position, input index, patch index)
    /// with an in-range input: the structure of W.
    pub fn taps(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (s, k) = (self.side as isize, self.k);
        let r = (k / 2) as isize;
        for o in 0..self.conv_channels() {
            for p in 0..self.side {
                for q in 0..self.side {
                    let out = self.out_index(o, p, q);
                    for ci in 0..self.c_in {
                        for a in 0..k {
                            for b in 0..k {
                                let (y, x) =
                                    (p as isize + a as isize - r, q as isize + b as isize - r);
                                if (0..s).contains(&y) && (0..s).contains(&x) {
                                    let input = ci * self.side * self.side + (y * s + x) as usize;
                                    f(o, out, input, (ci * k + a) * k + b);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The dense W (d_out × d_in, row-major) and c (d_out) of kernels K
    /// (conv channels × patch, row-major) and biases (conv channels).
    pub fn materialize(&self, kernels: &[f64], bias: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (d_in, d_out, pl) = (self.d_in(), self.d_out(), self.patch());
        let mut w = vec![0.0; d_out * d_in];
        self.taps(|o, out, input, t| w[out * d_in + input] += kernels[o * pl + t]);
        let mut c = vec![0.0; d_out];
        for o in 0..self.conv_channels() {
            for p in 0..self.side {
                for q in 0..self.side {
                    c[self.out_index(o, p, q)] = bias[o];
                }
            }
        }
        (w, c)
    }

    /// Patches (items·side² × patch) of latents H (items × d_in) and the
    /// matching targets (items·side² × conv channels) of Ẑ (items × d_out),
    /// in precision T (items in parallel).
    pub fn patches<T: Real>(&self, h: &[f64], zhat: &[f64]) -> (Vec<T>, Vec<T>) {
        let (d_in, d_out, side, k) = (self.d_in(), self.d_out(), self.side, self.k);
        let n = h.len() / d_in;
        let (pos, pl, oc) = (side * side, self.patch(), self.conv_channels());
        let r = (k / 2) as isize;
        let mut x = vec![T::ZERO; n * pos * pl];
        let mut z = vec![T::ZERO; n * pos * oc];
        let item = |(i, (xi, zo)): (usize, (&mut [T], &mut [T]))| {
            let hi = &h[i * d_in..(i + 1) * d_in];
            let zi = &zhat[i * d_out..(i + 1) * d_out];
            for p in 0..side {
                for q in 0..side {
                    let row = p * side + q;
                    let xr = &mut xi[row * pl..(row + 1) * pl];
                    for ci in 0..self.c_in {
                        for a in 0..k {
                            let y = p as isize + a as isize - r;
                            if !(0..side as isize).contains(&y) {
                                continue;
                            }
                            for b in 0..k {
                                let xx = q as isize + b as isize - r;
                                if (0..side as isize).contains(&xx) {
                                    xr[(ci * k + a) * k + b] =
                                        T::from_f64(hi[ci * pos + y as usize * side + xx as usize]);
                                }
                            }
                        }
                    }
                    for o in 0..oc {
                        zo[row * oc + o] = T::from_f64(zi[self.out_index(o, p, q)]);
                    }
                }
            }
        };
        if pl == 0 || oc == 0 || pos == 0 {
            return (x, z);
        }
        x.par_chunks_mut(pos * pl)
            .zip(z.par_chunks_mut(pos * oc))
            .enumerate()
            .for_each(item);
        (x, z)
    }
}

/// Plain-loop f64 twin of [`FORWARD`]: act(W h + c) for the rows of h.
pub fn reference_forward(
    sh: &ConvShape,
    kernels: &[f64],
    bias: &[f64],
    h: &[f64],
    act: Act,
) -> Vec<f64> {
    let (d_in, d_out, pl, s) = (sh.d_in(), sh.d_out(), sh.patch(), sh.side);
    let n = h.len().checked_div(d_in).unwrap_or(0);
    let r = sh.k / 2;
    let mut out = vec![0.0; n * d_out];
    for i in 0..n {
        for o in 0..sh.conv_channels() {
            for p in 0..s {
                for q in 0..s {
                    let mut acc = 0.0;
                    for ci in 0..sh.c_in {
                        for a in 0..sh.k {
                            for b in 0..sh.k {
                                let (y, x) = ((p + a).wrapping_sub(r), (q + b).wrapping_sub(r));
                                if y < s && x < s {
                                    acc += kernels[o * pl + (ci * sh.k + a) * sh.k + b]
                                        * h[i * d_in + ci * s * s + y * s + x];
                                }
                            }
                        }
                    }
                    out[i * d_out + sh.out_index(o, p, q)] = act.apply(acc + bias[o]);
                }
            }
        }
    }
    out
}

/// Plain-loop f64 twin of [`TRANSPOSE`]: Wᵀ z for the rows of z.
pub fn reference_transpose(sh: &ConvShape, kernels: &[f64], z: &[f64]) -> Vec<f64> {
    let (d_in, d_out, pl, s) = (sh.d_in(), sh.d_out(), sh.patch(), sh.side);
    let n = z.len().checked_div(d_out).unwrap_or(0);
    let r = sh.k / 2;
    let mut out = vec![0.0; n * d_in];
    for i in 0..n {
        for ci in 0..sh.c_in {
            for y in 0..s {
                for x in 0..s {
                    let mut acc = 0.0;
                    for o in 0..sh.conv_channels() {
                        for a in 0..sh.k {
                            for b in 0..sh.k {
                                let (p, q) = ((y + r).wrapping_sub(a), (x + r).wrapping_sub(b));
                                if p < s && q < s {
                                    acc += kernels[o * pl + (ci * sh.k + a) * sh.k + b]
                                        * z[i * d_out + sh.out_index(o, p, q)];
                                }
                            }
                        }
                    }
                    out[i * d_in + ci * s * s + y * s + x] = acc;
                }
            }
        }
    }
    out
}

/// Plain-loop f64 twin of [`NORMAL_EQ`]: Σ over items and positions of
/// [patch, 1]ᵀ [patch, 1, ẑ_o] ((P+1) × (P+1+oc), row-major).
pub fn reference_normal_eq(sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Vec<f64> {
    let (pl, oc) = (sh.patch(), sh.conv_channels());
    let (x, z) = sh.patches::<f64>(h, zhat);
    let rows = x.len().checked_div(pl).unwrap_or(0);
    let cols = pl + 1 + oc;
    let mut c = vec![0.0; (pl + 1) * cols];
    for row in 0..rows {
        let xr = |a: usize| if a < pl { x[row * pl + a] } else { 1.0 };
        let yr = |b: usize| {
            if b <= pl {
                xr(b)
            } else {
                z[row * oc + b - pl - 1]
            }
        };
        for a in 0..=pl {
            for b in 0..cols {
                c[a * cols + b] += xr(a) * yr(b);
            }
        }
    }
    c
}

/// CPU backend forward: the GEMM `H Wᵀ + c` with the materialized W, then act.
pub fn cpu_forward<T: Real>(
    sh: &ConvShape,
    kernels: &[f64],
    bias: &[f64],
    h: &[T],
    act: Act,
    out: &mut [T],
) {
    let (w, c) = sh.materialize(kernels, bias);
    let (d_in, d_out) = (sh.d_in(), sh.d_out());
    let mut wt = vec![T::ZERO; w.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = T::from_f64(w[o * d_in + i]);
        }
    }
    let c: Vec<T> = c.iter().map(|&v| T::from_f64(v)).collect();
    dense::cpu(h, d_in, &wt, d_out, &c, act, out);
}

/// CPU backend transpose: the GEMM `Z W` with the materialized W.
pub fn cpu_transpose<T: Real>(sh: &ConvShape, kernels: &[f64], z: &[T], out: &mut [T]) {
    let (w, _) = sh.materialize(kernels, &vec![0.0; sh.conv_channels()]);
    let w: Vec<T> = w.iter().map(|&v| T::from_f64(v)).collect();
    let zeros = vec![T::ZERO; sh.d_in()];
    dense::cpu(z, sh.d_out(), &w, sh.d_in(), &zeros, Act::Identity, out);
}

/// CPU backend normal equations: [`normal_eq::cpu`] on the patches of
/// blocks of `block` items, the blocks' partial sums added in order.
pub fn cpu_normal_eq<T: Real>(sh: &ConvShape, h: &[f64], zhat: &[f64], block: usize) -> Vec<f64> {
    let (d_in, d_out, pl, oc) = (sh.d_in(), sh.d_out(), sh.patch(), sh.conv_channels());
    let n = h.len().checked_div(d_in).unwrap_or(0);
    let mut total = vec![0.0; (pl + 1) * (pl + 1 + oc)];
    for i0 in (0..n).step_by(block.max(1)) {
        let i1 = (i0 + block.max(1)).min(n);
        let (x, z) = sh.patches::<T>(&h[i0 * d_in..i1 * d_in], &zhat[i0 * d_out..i1 * d_out]);
        let c = normal_eq::cpu(&x, pl, &z, oc);
        total.iter_mut().zip(c).for_each(|(t, v)| *t += v);
    }
    total
}

/// Items per chunk of a conv-unpool operator: at most `limit`, and few
/// enough that `width` values per item fit one binding.
pub fn gpu_chunk(ctx: &GpuContext, prec: Precision, width: usize, n: usize, limit: usize) -> usize {
    ctx.fit_rows(prec, width).min(limit).clamp(1, n.max(1))
}

/// A per-item operator (forward or transpose) with its kernels, biases and
/// activation on the device: what every chunk's dispatch shares.
struct Operator<'k> {
    kernel: &'k Kernel,
    ep: Epilogue,
}

impl<'k> Operator<'k> {
    fn upload(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        kernel: &'k Kernel,
        kernels: &[f64],
        bias: &[f64],
        act: dense::Act,
    ) -> Result<Self> {
        let ep = Epilogue::upload(ctx, prec, kernels, bias, act)?;
        Ok(Operator { kernel, ep })
    }

    /// The dispatch of `items` items from `src` into `out` (`d_dst` values
    /// each, one invocation per value).
    fn dispatch(
        &self,
        ctx: &Arc<GpuContext>,
        prec: Precision,
        (sh, items, d_dst): (&ConvShape, usize, usize),
        src: &GpuBuffer,
        out: &GpuBuffer,
    ) -> Result<Dispatch> {
        let params = Params::new(sh, items, self.ep.code);
        let threads = (items * d_dst) as u64;
        self.ep
            .dispatch(ctx, prec, self.kernel, &params, src, out, threads)
    }
}

/// Runs a per-item conv-unpool operator (forward or transpose) over chunks
/// of items: `src0` rows of `d_src`, results rows of `d_dst`, one
/// invocation per result value.
#[allow(clippy::too_many_arguments)]
fn gpu_rows(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    sh: &ConvShape,
    kernels: &[f64],
    bias: &[f64],
    src: &[f64],
    (d_src, d_dst): (usize, usize),
    act: dense::Act,
    limit: usize,
) -> Result<Vec<f64>> {
    let n = src.len().checked_div(d_src).unwrap_or(0);
    if n == 0 || d_dst == 0 {
        return Ok(vec![0.0; n * d_dst]);
    }
    let chunk = gpu_chunk(ctx, prec, d_src.max(d_dst), n, limit);
    let op = Operator::upload(ctx, prec, kernel, kernels, bias, act)?;
    let sb = ctx.alloc(chunk * d_src, Elem::Real(prec))?;
    let ob = ctx.alloc(chunk * d_dst, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * d_dst);
    for i0 in (0..n).step_by(chunk) {
        let items = chunk.min(n - i0);
        sb.write_real_at(0, &src[i0 * d_src..(i0 + items) * d_src]);
        ctx.run_one(&op.dispatch(ctx, prec, (sh, items, d_dst), &sb, &ob)?)?;
        out.extend(ob.read_real_range(0, items * d_dst)?);
    }
    Ok(out)
}

/// [`gpu_rows`] of rows held on the device: every tile in one submit, the
/// result held in tiles of the same height (which must fit one binding of
/// `d_dst` values).
fn gpu_tiles(
    ctx: &Arc<GpuContext>,
    op: &Operator,
    sh: &ConvShape,
    src: &RowTiles,
    d_dst: usize,
) -> Result<RowTiles> {
    let prec = src.precision();
    assert!(
        ctx.fit_rows(prec, d_dst) >= src.tile_rows(),
        "output tiles fit one binding"
    );
    let out = RowTiles::alloc(ctx, prec, src.rows(), d_dst, src.tile_rows())?;
    let disps = (0..src.tiles().len())
        .map(|t| {
            let items = src.tile(t).len();
            op.dispatch(
                ctx,
                prec,
                (sh, items, d_dst),
                &src.tiles()[t],
                &out.tiles()[t],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.run_all(&disps)?;
    Ok(out)
}

/// A conv-unpool layer's act(W h + c) (see the module doc), in chunks of
/// at most `limit` items that fit one binding.
#[allow(clippy::too_many_arguments)]
pub fn gpu_forward(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &ConvShape,
    kernels: &[f64],
    bias: &[f64],
    h: &[f64],
    act: dense::Act,
    limit: usize,
) -> Result<Vec<f64>> {
    let dims = (sh.d_in(), sh.d_out());
    gpu_rows(ctx, prec, &FORWARD, sh, kernels, bias, h, dims, act, limit)
}

/// [`gpu_forward`] of rows held on the device, the result held in tiles
/// of the same height.
pub fn gpu_forward_tiles(
    ctx: &Arc<GpuContext>,
    sh: &ConvShape,
    kernels: &[f64],
    bias: &[f64],
    h: &RowTiles,
    act: dense::Act,
) -> Result<RowTiles> {
    let op = Operator::upload(ctx, h.precision(), &FORWARD, kernels, bias, act)?;
    gpu_tiles(ctx, &op, sh, h, sh.d_out())
}

/// A conv-unpool layer's Wᵀ z, in chunks of at most `limit` items.
pub fn gpu_transpose(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &ConvShape,
    kernels: &[f64],
    z: &[f64],
    limit: usize,
) -> Result<Vec<f64>> {
    let bias = vec![0.0; sh.conv_channels()];
    let dims = (sh.d_out(), sh.d_in());
    gpu_rows(
        ctx,
        prec,
        &TRANSPOSE,
        sh,
        kernels,
        &bias,
        z,
        dims,
        dense::Act::Identity,
        limit,
    )
}

/// [`gpu_transpose`] of rows held on the device, the result held in tiles
/// of the same height.
pub fn gpu_transpose_tiles(
    ctx: &Arc<GpuContext>,
    sh: &ConvShape,
    kernels: &[f64],
    z: &RowTiles,
) -> Result<RowTiles> {
    let bias = vec![0.0; sh.conv_channels()];
    let op = Operator::upload(
        ctx,
        z.precision(),
        &TRANSPOSE,
        kernels,
        &bias,
        dense::Act::Identity,
    )?;
    gpu_tiles(ctx, &op, sh, z, sh.d_in())
}

/// The dispatches of one chunk's per-kernel normal equations into `c`
/// (one, or on software adapters one per span of its rows; see
/// [`normal_eq_rows_per_dispatch`]).
fn normal_eq_dispatch(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    (sh, items): (&ConvShape, usize),
    scal: &GpuBuffer,
    h: &GpuBuffer,
    z: &GpuBuffer,
    c: &GpuBuffer,
) -> Result<Vec<Dispatch>> {
    let (pl, oc) = (sh.patch(), sh.conv_channels());
    let groups = (pl + 1).div_ceil(GPU_TILE) * (pl + 1 + oc).div_ceil(GPU_TILE);
    let rows = items * sh.side * sh.side;
    let span = normal_eq_rows_per_dispatch(ctx.summary().software);
    // An empty chunk still takes one dispatch, which writes the zeros.
    (0..rows.max(1))
        .step_by(span.min(rows).max(1))
        .map(|begin| {
            let params = ctx.uniform(&Params {
                row_begin: begin as u32,
                row_end: rows.min(begin.saturating_add(span)) as u32,
                resume: (begin > 0) as u32,
                ..Params::new(sh, items, 0)
            })?;
            ctx.prepare(
                &NORMAL_EQ,
                prec,
                &[
                    (&params).into(),
                    scal.into(),
                    h.into(),
                    z.into(),
                    scal.into(),
                    c.into(),
                ],
                (groups * NORMAL_EQ.workgroup as usize) as u64,
            )
        })
        .collect()
}

/// A conv-unpool layer's per-kernel normal equations over chunks of at
/// most `limit` items; each chunk's partial sums are read back and added
/// in f64 on the host in chunk order (the allreduce seam).
pub fn gpu_normal_eq(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &ConvShape,
    h: &[f64],
    zhat: &[f64],
    limit: usize,
) -> Result<Vec<f64>> {
    let (d_in, d_out, pl, oc) = (sh.d_in(), sh.d_out(), sh.patch(), sh.conv_channels());
    let cols = pl + 1 + oc;
    let mut total = vec![0.0; (pl + 1) * cols];
    let n = h.len().checked_div(d_in).unwrap_or(0);
    if n == 0 {
        return Ok(total);
    }
    let chunk = gpu_chunk(ctx, prec, d_in.max(d_out), n, limit);
    let hb = ctx.alloc(chunk * d_in, Elem::Real(prec))?;
    let zb = ctx.alloc((chunk * d_out).max(1), Elem::Real(prec))?;
    let scal = ctx.upload_real(&[1.0], prec)?;
    let cb = ctx.alloc((pl + 1) * cols, Elem::Real(prec))?;
    for i0 in (0..n).step_by(chunk) {
        let items = chunk.min(n - i0);
        hb.write_real_at(0, &h[i0 * d_in..(i0 + items) * d_in]);
        zb.write_real_at(0, &zhat[i0 * d_out..(i0 + items) * d_out]);
        let disps = normal_eq_dispatch(ctx, prec, (sh, items), &scal, &hb, &zb, &cb)?;
        ctx.run_all(&disps)?;
        let part = cb.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    Ok(total)
}

/// [`gpu_normal_eq`] of H and Ẑ held in tiles of one height: every
/// tile's partial sums in one submit, added on the host in tile order (so
/// the result is [`gpu_normal_eq`]'s with chunks of the tile height).
pub fn gpu_normal_eq_tiles(
    ctx: &Arc<GpuContext>,
    sh: &ConvShape,
    h: &RowTiles,
    zhat: &RowTiles,
) -> Result<Vec<f64>> {
    let (prec, pl, oc) = (h.precision(), sh.patch(), sh.conv_channels());
    assert_eq!(h.rows(), zhat.rows(), "H and Ẑ have the same items");
    assert_eq!(h.tile_rows(), zhat.tile_rows(), "H and Ẑ share their tiles");
    let size = (pl + 1) * (pl + 1 + oc);
    let scal = ctx.upload_real(&[1.0], prec)?;
    let parts = (0..h.tiles().len())
        .map(|_| ctx.alloc(size, Elem::Real(prec)))
        .collect::<Result<Vec<_>>>()?;
    let disps = parts
        .iter()
        .enumerate()
        .map(|(t, c)| {
            let items = (sh, h.tile(t).len());
            normal_eq_dispatch(ctx, prec, items, &scal, &h.tiles()[t], &zhat.tiles()[t], c)
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.run_all(&disps.into_iter().flatten().collect::<Vec<_>>())?;
    normal_eq::sum_parts(&parts, size)
}
