//! Conv-unpool layers: a stride-1 k × k convolution (k odd, zero "same"
//! padding) from c_in to c_out·u² channels, then depth-to-space (u × u) to
//! c_out channels at u× the resolution:
//!
//! ```text
//! y[o][p][q] = b_o + Σ_{ci,a,b} K[o][ci][a][b] h[ci][p+a−r][q+b−r],  r = (k−1)/2
//! out[co][u p + s][u q + t] = y[co·u² + s·u + t][p][q]
//! ```
//!
//! The layer is linear in h: the dense layer `W h + c` of a structured W
//! (d_out × d_in, d = channels · side²). Decoding runs the convolution
//! itself ([`crate::engine::Backend::conv_forward`]); the latent solve is
//! H = (Ẑ − c) W (WᵀW)⁻¹, the transposed operator
//! ([`crate::engine::Backend::conv_transpose`]) then one product with the host's
//! (WᵀW)⁻¹ (W is small for image decoders: 784 × 392 for MNIST's top
//! layer). Latents are determined when c_in ≤ c_out·u² (d_in ≤ d_out). The
//! weight solve is per output channel o: the normal equations of the
//! patches (c_in·k² + 1 unknowns) against ẑ_o over every position of every
//! (sampled) item, shared by all o ([`crate::engine::Backend::conv_normal_eq`]).
//! The operators and their geometry live in [`crate::kernels::conv_unpool`].
//!
//! "Same" padding, not the paper's "full": with full convolutions a side
//! grows to u(S + k − 1), and two 7 × 7, u = 2 layers cannot end at MNIST's
//! 28 × 28 (the paper's setup), while same padding gives 7 → 14 → 28.

use crate::error::{Error, Result};

pub use crate::kernels::conv_unpool::ConvShape;

/// Parses `C:KxK:U,C:KxK:U,…` (from the latent up: input channels, kernel,
/// unpooling) for data of `channels` × `side`²; returns the layer shapes.
pub fn parse_spec(spec: &str, channels: usize, side: usize) -> Result<Vec<ConvShape>> {
    let bad = |why: String| Error::Input(format!("conv-unpool layers '{spec}': {why}"));
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
        // A kernel wider than 2·side − 1 sees only padding past that; sizes
        // past 2^32 (or overflowing) are refused before anything is planned.
        let widest = (2 * s.side).saturating_sub(1).max(1);
        if s.k > widest {
            return Err(bad(format!(
                "layer {}: a {}x{} kernel on a {}x{} input (at most {widest}x{widest})",
                i + 1,
                s.k,
                s.k,
                s.side,
                s.side
            )));
        }
        let big = |v: Option<usize>| v.is_none_or(|v| v > u32::MAX as usize);
        if big(s.c_in.checked_mul(s.k * s.k))
            || big(s.c_out.checked_mul(s.u).and_then(|v| v.checked_mul(s.u)))
        {
            return Err(bad(format!("layer {}: more than 2^32 channels", i + 1)));
        }
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
