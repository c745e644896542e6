//! The backend layer: methods are written once against [`Backend`], which
//! runs the kernels either natively (`cpu`: Rust + rayon, f32 or f64) or on
//! a wgpu adapter (`gpu`: the WGSL kernels in `shaders/`).

mod cpu_rrr;
pub mod gpu_ops;
mod gpu_rrr;

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::{GpuContext, GpuRequest, context::hardware_adapter_present};
use crate::kernels::conv_unpool::{self, ConvShape};
use crate::kernels::{
    dense, gauss_kernel, kernel_product, leaky_relu, normal_eq, project_activation,
    project_bilinear, row_residual,
};
use crate::real::Precision;
use crate::rrr::{RrrEngine, RrrProblem};

/// Which device to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU when present, else the CPU backend (software
    /// adapters such as lavapipe are slower than native CPU code).
    Auto,
    /// A wgpu adapter (hardware preferred, software accepted).
    Gpu,
    /// The native CPU backend.
    Cpu,
}

#[derive(Clone, Debug)]
enum Inner {
    Cpu,
    Gpu(Arc<GpuContext>),
}

/// An opened backend at a fixed precision.
#[derive(Clone, Debug)]
pub struct Backend {
    inner: Inner,
    precision: Precision,
}

impl Backend {
    /// Opens the backend the user asked for.
    pub fn open(choice: DeviceChoice, precision: Precision, req: &GpuRequest) -> Result<Self> {
        match choice {
            DeviceChoice::Cpu => Ok(Self::cpu(precision)),
            DeviceChoice::Gpu => {
                let req = GpuRequest {
                    allow_software: true,
                    ..req.clone()
                };
                Ok(Self::gpu(GpuContext::open(&req, precision)?, precision))
            }
            DeviceChoice::Auto => {
                let hw = GpuRequest {
                    allow_software: false,
                    ..req.clone()
                };
                if hardware_adapter_present(&hw) {
                    match GpuContext::open(&hw, precision) {
                        Ok(ctx) => return Ok(Self::gpu(ctx, precision)),
                        Err(e) => log::warn!("hardware GPU unusable ({e}); using the CPU backend"),
                    }
                }
                Ok(Self::cpu(precision))
            }
        }
    }

    /// The native CPU backend.
    pub fn cpu(precision: Precision) -> Self {
        Backend {
            inner: Inner::Cpu,
            precision,
        }
    }

    /// A GPU backend on an opened context.
    pub fn gpu(ctx: Arc<GpuContext>, precision: Precision) -> Self {
        Backend {
            inner: Inner::Gpu(ctx),
            precision,
        }
    }

    /// Working precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The GPU context, if this is a GPU backend.
    pub fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        match &self.inner {
            Inner::Gpu(c) => Some(c),
            Inner::Cpu => None,
        }
    }

    /// Starts a work/energy meter reading the sensor for this device
    /// (NVML for GPU runs, else RAPL).
    pub fn start_meter(&self) -> crate::meter::Meter {
        crate::meter::Meter::start(match self.inner {
            Inner::Gpu(_) => crate::meter::SensorKind::Gpu,
            Inner::Cpu => crate::meter::SensorKind::Cpu,
        })
    }

    /// Human-readable device description.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Inner::Gpu(c) => {
                let s = c.summary();
                format!("gpu: {} ({}, {})", s.name, s.backend, s.device_type)
            }
        }
    }

    /// Projects a batch of bilinear problems.
    pub fn project_bilinear(
        &self,
        batch: &project_bilinear::BilinearBatch,
    ) -> Result<project_bilinear::BilinearOut> {
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F32 => project_bilinear::project_batch_reference::<f32>(batch),
                Precision::F64 => project_bilinear::project_batch_reference::<f64>(batch),
            }),
            Inner::Gpu(ctx) => gpu_ops::project_bilinear(ctx, self.precision, batch),
        }
    }

    /// Projects (x, y, b) element-wise onto each element's activation/class set.
    pub fn project_activation(
        &self,
        kinds: &[u32],
        margins: &[f64],
        x: &mut [f64],
        y: &mut [f64],
        b: &mut [f64],
    ) -> Result<()> {
        match &self.inner {
            Inner::Cpu => {
                match self.precision {
                    Precision::F64 => project_activation::reference(kinds, margins, x, y, b),
                    Precision::F32 => {
                        for i in 0..kinds.len() {
                            let (a, c, d) = project_activation::project(
                                kinds[i],
                                x[i] as f32,
                                y[i] as f32,
                                b[i] as f32,
                                margins[i] as f32,
                            );
                            (x[i], y[i], b[i]) = (a as f64, c as f64, d as f64);
                        }
                    }
                }
                Ok(())
            }
            Inner::Gpu(ctx) => {
                gpu_ops::project_activation(ctx, self.precision, kinds, margins, x, y, b)
            }
        }
    }

    /// Gaussian kernel matrix (row-major n × m) of the rows of `a` against
    /// those of `b`, both with `d` columns; `zero_diag` sets K[i][i] = 0.
    pub fn gauss_kernel(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
    ) -> Result<Vec<f64>> {
        let mut k = vec![];
        self.gauss_kernel_into(a, b, d, sigma, zero_diag, &mut k)?;
        Ok(k)
    }

    /// [`Backend::gauss_kernel`] into a reused buffer (large matrices cost
    /// page faults when allocated afresh for every σ tried).
    pub fn gauss_kernel_into(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
        k: &mut Vec<f64>,
    ) -> Result<()> {
        let len = gauss_len(a, b, d);
        match &self.inner {
            Inner::Cpu => match self.precision {
                Precision::F64 => {
                    k.resize(len, 0.0);
                    gauss_kernel::cpu(a, b, d, sigma, zero_diag, k);
                }
                Precision::F32 => {
                    let mut k32 = vec![0.0f32; len];
                    let ca = to_f32(a);
                    // The same buffer twice keeps cpu()'s symmetric shortcut.
                    if std::ptr::eq(a, b) {
                        gauss_kernel::cpu(&ca, &ca, d, sigma as f32, zero_diag, &mut k32);
                    } else {
                        gauss_kernel::cpu(&ca, &to_f32(b), d, sigma as f32, zero_diag, &mut k32);
                    }
                    k.clear();
                    k.extend(k32.into_iter().map(f64::from));
                }
            },
            Inner::Gpu(ctx) => {
                *k = gpu_ops::gauss_kernel(ctx, self.precision, a, b, d, sigma, zero_diag)?;
            }
        }
        Ok(())
    }

    /// Kernel-matrix product `(w ∘ f(A, B)) M` (m × r row-major, one more
    /// column with `spec.squares`) without
    /// forming the m × n matrix; see [`crate::kernels::kernel_product`].
    pub fn kernel_product(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Vec<f64>> {
        let (na, _) = kernel_product::shape(a, b, d, m, r, spec);
        let len = na * spec.width(r);
        match &self.inner {
            Inner::Cpu => match self.precision {
                Precision::F64 => {
                    let mut out = vec![0.0; len];
                    kernel_product::cpu(a, b, d, m, r, spec, &mut out);
                    Ok(out)
                }
                Precision::F32 => {
                    let mut out = vec![0.0f32; len];
                    let ca = to_f32(a);
                    // The same buffer twice keeps cpu()'s symmetric path.
                    let cb = if std::ptr::eq(a, b) {
                        None
                    } else {
                        Some(to_f32(b))
                    };
                    let cb = cb.as_deref().unwrap_or(&ca);
                    kernel_product::cpu(&ca, cb, d, &to_f32(m), r, spec, &mut out);
                    Ok(out.into_iter().map(f64::from).collect())
                }
            },
            Inner::Gpu(ctx) => gpu_ops::kernel_product(ctx, self.precision, a, b, d, m, r, spec),
        }
    }

    /// [`Backend::kernel_product`] with f32 operands and result, for a caller
    /// that keeps its data in f32 (the ISM Φ build of an f32 fit): an f32
    /// CPU backend then converts nothing. Other backends widen to f64 and
    /// call [`Backend::kernel_product`]. Pass the same slice as `a` and `b`
    /// for K(A, A) (the CPU symmetric path keys on it).
    pub fn kernel_product_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Vec<f32>> {
        if let (Inner::Cpu, Precision::F32) = (&self.inner, self.precision) {
            let (na, _) = kernel_product::shape(a, b, d, m, r, spec);
            let mut out = vec![0.0f32; na * spec.width(r)];
            kernel_product::cpu(a, b, d, m, r, spec, &mut out);
            return Ok(out);
        }
        let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let wa = wide(a);
        let wb = if std::ptr::eq(a, b) {
            None
        } else {
            Some(wide(b))
        };
        let out = self.kernel_product(&wa, wb.as_deref().unwrap_or(&wa), d, &wide(m), r, spec)?;
        Ok(to_f32(&out))
    }

    /// Dense product with epilogue `act(A B + bias)`: A is n × k, B k × m,
    /// both row-major (see [`crate::kernels::dense`]).
    pub fn dense(
        &self,
        a: &[f64],
        k: usize,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
    ) -> Result<Vec<f64>> {
        let n = dense::shape(a, k, b, m, bias);
        match &self.inner {
            Inner::Cpu => match self.precision {
                Precision::F64 => {
                    let mut out = vec![0.0; n * m];
                    dense::cpu(a, k, b, m, bias, act, &mut out);
                    Ok(out)
                }
                Precision::F32 => {
                    let mut out = vec![0.0f32; n * m];
                    dense::cpu(&to_f32(a), k, &to_f32(b), m, &to_f32(bias), act, &mut out);
                    Ok(out.into_iter().map(f64::from).collect())
                }
            },
            Inner::Gpu(ctx) => gpu_ops::dense(ctx, self.precision, a, k, b, m, bias, act),
        }
    }

    /// A conv-unpool layer's act(W h + c) for the rows of h (n × d_in), with
    /// kernels (conv channels × patch) and biases (conv channels); see
    /// [`crate::kernels::conv_unpool`].
    pub fn conv_forward(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &[f64],
        act: dense::Act,
    ) -> Result<Vec<f64>> {
        conv_check(sh, kernels, Some(bias), h, sh.d_in())?;
        let n = h.len() / sh.d_in().max(1);
        match &self.inner {
            Inner::Cpu => match self.precision {
                Precision::F64 => {
                    let mut out = vec![0.0; n * sh.d_out()];
                    conv_unpool::cpu_forward(sh, kernels, bias, h, act, &mut out);
                    Ok(out)
                }
                Precision::F32 => {
                    let mut out = vec![0.0f32; n * sh.d_out()];
                    conv_unpool::cpu_forward(sh, kernels, bias, &to_f32(h), act, &mut out);
                    Ok(out.into_iter().map(f64::from).collect())
                }
            },
            Inner::Gpu(ctx) => {
                gpu_ops::conv_forward(ctx, self.precision, sh, kernels, bias, h, act, usize::MAX)
            }
        }
    }

    /// A conv-unpool layer's transposed operator Wᵀ z for the rows of z
    /// (n × d_out).
    pub fn conv_transpose(&self, sh: &ConvShape, kernels: &[f64], z: &[f64]) -> Result<Vec<f64>> {
        conv_check(sh, kernels, None, z, sh.d_out())?;
        let n = z.len() / sh.d_out().max(1);
        match &self.inner {
            Inner::Cpu => match self.precision {
                Precision::F64 => {
                    let mut out = vec![0.0; n * sh.d_in()];
                    conv_unpool::cpu_transpose(sh, kernels, z, &mut out);
                    Ok(out)
                }
                Precision::F32 => {
                    let mut out = vec![0.0f32; n * sh.d_in()];
                    conv_unpool::cpu_transpose(sh, kernels, &to_f32(z), &mut out);
                    Ok(out.into_iter().map(f64::from).collect())
                }
            },
            Inner::Gpu(ctx) => {
                gpu_ops::conv_transpose(ctx, self.precision, sh, kernels, z, usize::MAX)
            }
        }
    }

    /// A conv-unpool layer's per-kernel normal equations over every
    /// position of every item of H (n × d_in) against Ẑ (n × d_out):
    /// (P+1) × (P+1+oc) row-major, summed over chunks of items.
    pub fn conv_normal_eq(&self, sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Result<Vec<f64>> {
        let n = h.len().checked_div(sh.d_in()).unwrap_or(0);
        if h.len() != n * sh.d_in() || zhat.len() != n * sh.d_out() {
            return Err(crate::Error::Input(format!(
                "conv normal equations: {} latent and {} target values do not make items of {} and {}",
                h.len(),
                zhat.len(),
                sh.d_in(),
                sh.d_out()
            )));
        }
        // Items per chunk: bounds the CPU's gathered patches (items·side²·P).
        const BLOCK: usize = 500;
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F64 => conv_unpool::cpu_normal_eq::<f64>(sh, h, zhat, BLOCK),
                Precision::F32 => conv_unpool::cpu_normal_eq::<f32>(sh, h, zhat, BLOCK),
            }),
            Inner::Gpu(ctx) => gpu_ops::conv_normal_eq(ctx, self.precision, sh, h, zhat, 8192),
        }
    }

    /// Normal equations `[H,1]ᵀ[H,1,Z]` ((p+1) × (p+1+q) row-major) of H
    /// (N × p) and Z (N × q), summed over item blocks (see
    /// [`crate::kernels::normal_eq`]).
    pub fn normal_eq(&self, h: &[f64], p: usize, z: &[f64], q: usize) -> Result<Vec<f64>> {
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F64 => normal_eq::cpu(h, p, z, q),
                Precision::F32 => normal_eq::cpu(&to_f32(h), p, &to_f32(z), q),
            }),
            Inner::Gpu(ctx) => gpu_ops::normal_eq(ctx, self.precision, h, p, z, q, 8192),
        }
    }

    /// Per-row (L1, squared L2) residuals of two n × d matrices.
    pub fn row_residual(&self, a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>> {
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F64 => row_residual::cpu(a, b, d),
                Precision::F32 => row_residual::cpu(&to_f32(a), &to_f32(b), d),
            }),
            Inner::Gpu(ctx) => gpu_ops::row_residual(ctx, self.precision, a, b, d),
        }
    }

    /// Leaky ReLU with slope α (or its inverse) of every element.
    pub fn leaky_relu(&self, x: &[f64], alpha: f64, inverse: bool) -> Result<Vec<f64>> {
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F64 => {
                    let mut v = x.to_vec();
                    leaky_relu::cpu(&mut v, alpha, inverse);
                    v
                }
                Precision::F32 => {
                    let mut v = to_f32(x);
                    leaky_relu::cpu(&mut v, alpha, inverse);
                    v.into_iter().map(f64::from).collect()
                }
            }),
            Inner::Gpu(ctx) => gpu_ops::leaky_relu(ctx, self.precision, x, alpha, inverse),
        }
    }

    /// An RRR engine for a problem with batches of `items` items.
    pub fn rrr_engine(&self, problem: &RrrProblem, items: usize) -> Result<Box<dyn RrrEngine>> {
        match &self.inner {
            Inner::Cpu => Ok(match self.precision {
                Precision::F32 => Box::new(cpu_rrr::CpuRrr::<f32>::new(problem, items)?),
                Precision::F64 => Box::new(cpu_rrr::CpuRrr::<f64>::new(problem, items)?),
            }),
            Inner::Gpu(ctx) => Ok(Box::new(gpu_rrr::GpuRrr::new(
                ctx,
                self.precision,
                problem,
                items,
            )?)),
        }
    }
}

fn gauss_len(a: &[f64], b: &[f64], d: usize) -> usize {
    match (a.len().checked_div(d), b.len().checked_div(d)) {
        (Some(n), Some(m)) => n * m,
        _ => 0,
    }
}

/// Shape checks shared by the conv-unpool operators (rows of width `d`;
/// no biases for the transposed operator).
fn conv_check(
    sh: &ConvShape,
    kernels: &[f64],
    bias: Option<&[f64]>,
    x: &[f64],
    d: usize,
) -> Result<()> {
    let ok = kernels.len() == sh.conv_channels() * sh.patch()
        && bias.is_none_or(|b| b.len() == sh.conv_channels())
        && x.len().checked_rem(d).is_none_or(|r| r == 0)
        && (d > 0 || x.is_empty());
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Input(format!(
            "conv-unpool {sh:?}: {} kernel values, {} biases, {} inputs do not fit",
            kernels.len(),
            bias.map_or(0, <[f64]>::len),
            x.len()
        )))
    }
}

/// f64 values rounded to f32, for the f32 CPU paths.
fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
