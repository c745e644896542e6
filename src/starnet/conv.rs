//! Conv-unpool layers: a stride-1 k × k convolution (k odd, zero "same"
//! padding) from c_in to c_out·u² channels, then depth-to-space (u × u) to
//! c_out channels at u× the resolution:
//!
//! ```text
//! y[o][p][q] = b_o + Σ_{ci,a,b} K[o][ci][a][b] h[ci][p+a−r][q+b−r],  r = (k−1)/2
//! out[co][u p + s][u q + t] = y[co·u² + s·u + t][p][q]
//! ```
//!
//! The layer is linear in h, so it is the dense layer `W h + c` of a
//! structured W (d_out × d_in, d = channels · side²), which the latent
//! solves and decoding use as is (W is small for image decoders: 784 × 392
//! for MNIST's top layer). Latents are determined when c_in ≤ c_out·u²
//! (d_in ≤ d_out). The weight solve is per output channel o: the normal
//! equations of the patches (c_in·k² + 1 unknowns) against ẑ_o over every
//! position of every (sampled) item, shared by all o, so one
//! [`crate::Backend::normal_eq`] per block of items gives them all.
//!
//! "Same" padding, not the paper's "full": with full convolutions a side
//! grows to u(S + k − 1), and two 7 × 7, u = 2 layers cannot end at MNIST's
//! 28 × 28 (the paper's setup), while same padding gives 7 → 14 → 28.

use crate::error::{Error, Result};

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
    fn out_index(&self, o: usize, p: usize, q: usize) -> usize {
        let (uu, s_out) = (self.u * self.u, self.u * self.side);
        let (co, rem) = (o / uu, o % uu);
        let (s, t) = (rem / self.u, rem % self.u);
        co * s_out * s_out + (self.u * p + s) * s_out + self.u * q + t
    }

    /// Visits every (conv channel o, position, input index, patch index)
    /// with an in-range input: the structure of W.
    fn taps(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
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
    /// matching targets (items·side² × conv channels) of Ẑ (items × d_out).
    pub fn patches(&self, h: &[f64], zhat: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (d_in, d_out, side, k) = (self.d_in(), self.d_out(), self.side, self.k);
        let n = h.len() / d_in;
        let (pos, pl, oc) = (side * side, self.patch(), self.conv_channels());
        let r = (k / 2) as isize;
        let mut x = vec![0.0; n * pos * pl];
        let mut z = vec![0.0; n * pos * oc];
        for i in 0..n {
            let hi = &h[i * d_in..(i + 1) * d_in];
            let zi = &zhat[i * d_out..(i + 1) * d_out];
            for p in 0..side {
                for q in 0..side {
                    let row = i * pos + p * side + q;
                    let xr = &mut x[row * pl..(row + 1) * pl];
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
                                        hi[ci * pos + y as usize * side + xx as usize];
                                }
                            }
                        }
                    }
                    for o in 0..oc {
                        z[row * oc + o] = zi[self.out_index(o, p, q)];
                    }
                }
            }
        }
        (x, z)
    }
}

/// Parses `C:KxK:U,C:KxK:U,…` (from the latent up: input channels, kernel,
/// unpooling) for data of `channels` × `side`²; returns the layer shapes.
pub fn parse_spec(spec: &str, channels: usize, side: usize) -> Result<Vec<ConvShape>> {
    let bad = |why: String| Error::Input(format!("--conv {spec}: {why}"));
    let mut parts = vec![];
    for item in spec.split(',') {
        let f: Vec<&str> = item.trim().split(':').collect();
        let (c, k, u) = match f.as_slice() {
            [c, k, u] => (c, k, u),
            _ => return Err(bad(format!("'{item}' is not C:KxK:U"))),
        };
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("'{t}' is not a number")))
        };
        let (ka, kb) = k
            .split_once(['x', 'X'])
            .ok_or_else(|| bad(format!("kernel '{k}' is not KxK")))?;
        let (c, ka, kb, u) = (num(c)?, num(ka)?, num(kb)?, num(u)?);
        if ka != kb || ka % 2 == 0 {
            return Err(bad(format!(
                "kernels must be square with an odd side (got {ka}x{kb})"
            )));
        }
        if c == 0 || u == 0 {
            return Err(bad("channels and unpooling must be positive".into()));
        }
        parts.push((c, ka, u));
    }
    let mut shapes = vec![];
    let mut out_side = side;
    for (i, &(c_in, k, u)) in parts.iter().enumerate().rev() {
        if !out_side.is_multiple_of(u) {
            return Err(bad(format!(
                "layer {}: side {out_side} is not a multiple of the unpooling {u}",
                i + 1
            )));
        }
        let c_out = parts.get(i + 1).map_or(channels, |p| p.0);
        shapes.push(ConvShape {
            c_in,
            c_out,
            k,
            u,
            side: out_side / u,
        });
        out_side /= u;
    }
    shapes.reverse();
    for (i, s) in shapes.iter().enumerate() {
        if s.c_in > s.conv_channels() {
            return Err(bad(format!(
                "layer {}: {} input channels > {} = c_out·u² output channels: the latents \
                 would be underdetermined",
                i + 1,
                s.c_in,
                s.conv_channels()
            )));
        }
    }
    Ok(shapes)
}
