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

use super::dense::{self, Act};
use super::normal_eq;
use crate::gpu::{Bind, Kernel};
use crate::real::Real;
use rayon::prelude::*;

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
        }
    }
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
