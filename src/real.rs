//! Floating-point precision: the [`Real`] trait over f32 and f64, and the
//! run-time [`Precision`] choice shared by both backends.

use std::borrow::Cow;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// Working precision of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (default; every adapter).
    F32,
    /// 64-bit floats (CPU always; GPU with SHADER_F64).
    F64,
}

impl Precision {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F64 => 8,
        }
    }

    /// WGSL scalar type name.
    pub fn wgsl(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }

    /// Machine epsilon of this precision.
    pub fn epsilon(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }

    /// The largest |value| a data file may hold in this precision: 1e16 for
    /// f32 and 1e150 for f64. Larger values have squares that, summed over
    /// many items (norms, Gram matrices, projections), overflow the working
    /// precision (f32 reaches infinity near 3.4e38, f64 near 1.8e308), after
    /// which a run computes NaN or never converges.
    pub fn max_input(self) -> f64 {
        match self {
            Precision::F32 => 1e16,
            Precision::F64 => 1e150,
        }
    }
}

impl Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wgsl())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(format!("unknown precision '{s}' (use f32 or f64)")),
        }
    }
}

/// The scalar operations the kernels need, for f32 and f64.
pub trait Real:
    Copy
    + Default
    + Debug
    + Display
    + PartialOrd
    + Send
    + Sync
    + bytemuck::Pod
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + 'static
{
    /// The precision tag of this type.
    const PRECISION: Precision;
    /// Machine epsilon.
    const EPSILON: Self;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from f64 (rounding).
    fn from_f64(v: f64) -> Self;
    /// Converts to f64 (exact).
    fn to_f64(self) -> f64;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Larger of two (NaN-ignoring as std's max).
    fn max(self, other: Self) -> Self;
    /// Smaller of two.
    fn min(self, other: Self) -> Self;
    /// True if neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// self · a + b with one rounding. One instruction in the AVX2 and
    /// AVX-512 copies of `simd_dispatch!` kernels (which enable FMA) and on
    /// aarch64; a library call in code built for baseline x86-64, so only
    /// those kernels use it (their baseline copies run only on x86-64 CPUs
    /// without AVX2, and give the same, exactly rounded, results).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// f64 values in this precision: borrowed for f64, rounded copies for f32.
    fn from_f64s(v: &[f64]) -> Cow<'_, [Self]>;
    /// f32 values in this precision: borrowed for f32, widened copies for f64.
    fn from_f32s(v: &[f32]) -> Cow<'_, [Self]>;
    /// The values as f64 (moved, without a copy, for f64).
    fn into_f64s(v: Vec<Self>) -> Vec<f64>;
    /// The values as f32 (moved, without a copy, for f32).
    fn into_f32s(v: Vec<Self>) -> Vec<f32>;
    /// Runs `fill` on `len` values of this precision that end up in `out`
    /// (f64 fills `out` itself, so a reused buffer costs no new pages).
    fn fill_f64s(out: &mut Vec<f64>, len: usize, fill: impl FnOnce(&mut [Self]));
}

macro_rules! impl_real {
    ($t:ty, $p:expr, { $($slices:item)* }) => {
        impl Real for $t {
            $($slices)*
            const PRECISION: Precision = $p;
            const EPSILON: Self = <$t>::EPSILON;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
    };
}
impl_real!(f32, Precision::F32, {
    fn from_f64s(v: &[f64]) -> Cow<'_, [f32]> {
        Cow::Owned(v.iter().map(|&x| x as f32).collect())
    }
    fn from_f32s(v: &[f32]) -> Cow<'_, [f32]> {
        Cow::Borrowed(v)
    }
    fn into_f64s(v: Vec<f32>) -> Vec<f64> {
        v.into_iter().map(f64::from).collect()
    }
    fn into_f32s(v: Vec<f32>) -> Vec<f32> {
        v
    }
    fn fill_f64s(out: &mut Vec<f64>, len: usize, fill: impl FnOnce(&mut [f32])) {
        let mut tmp = vec![0.0f32; len];
        fill(&mut tmp);
        out.clear();
        out.extend(tmp.into_iter().map(f64::from));
    }
});
impl_real!(f64, Precision::F64, {
    fn from_f64s(v: &[f64]) -> Cow<'_, [f64]> {
        Cow::Borrowed(v)
    }
    fn from_f32s(v: &[f32]) -> Cow<'_, [f64]> {
        Cow::Owned(v.iter().map(|&x| f64::from(x)).collect())
    }
    fn into_f64s(v: Vec<f64>) -> Vec<f64> {
        v
    }
    fn into_f32s(v: Vec<f64>) -> Vec<f32> {
        v.into_iter().map(|x| x as f32).collect()
    }
    fn fill_f64s(out: &mut Vec<f64>, len: usize, fill: impl FnOnce(&mut [f64])) {
        out.resize(len, 0.0);
        fill(out);
    }
});
