//! The engine layer: methods are written once against [`Backend`], which
//! runs the kernels natively ([`cpu`]: Rust + rayon, f32 or f64) or on a
//! wgpu adapter ([`gpu`]: the WGSL kernels in `shaders/`), and sums over
//! data items through its [`Collective`].
//!
//! [`Backend`] is a thin handle: every operation is one line delegating to
//! the [`Ops`] of the device it was opened on, after the shape checks both
//! devices share. Adding a device means implementing [`Ops`] (and an
//! [`RrrEngine`]); the methods do not change.

pub mod collective;
pub mod cpu;
pub mod gpu;
pub mod held;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod rrr;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuRequest, context::hardware_adapter_present};
use crate::kernels::conv_unpool::ConvShape;
use crate::kernels::{dense, kernel_product, project_bilinear};
use crate::problem::RrrProblem;
use crate::real::{Precision, Real};

pub use collective::{Collective, CommStats, Local, Share};
pub use held::Held;
pub use rrr::{BatchEnd, Consensus, IterReport, Predictions, RrrEngine};

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

/// The kind of device a backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The native CPU backend.
    Cpu,
    /// A wgpu adapter.
    Gpu,
}

/// The operations a device implements, in f64 at the interface (each
/// device computes in its working precision).
pub trait Ops: Send + Sync + std::fmt::Debug {
    /// CPU or GPU.
    fn kind(&self) -> DeviceKind;
    /// The device in words.
    fn describe(&self) -> String;
    /// The GPU context, for a GPU device.
    fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        None
    }
    /// Projects a batch of bilinear problems.
    fn project_bilinear(
        &self,
        batch: &project_bilinear::BilinearBatch,
    ) -> Result<project_bilinear::BilinearOut>;
    /// Projects (x, y, b) element-wise onto each element's activation/class set.
    fn project_activation(
        &self,
        kinds: &[u32],
        margins: &[f64],
        x: &mut [f64],
        y: &mut [f64],
        b: &mut [f64],
    ) -> Result<()>;
    /// Gaussian kernel matrix into `k` (see [`Backend::gauss_kernel`]).
    #[allow(clippy::too_many_arguments)]
    fn gauss_kernel_into(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
        len: usize,
        k: &mut Vec<f64>,
    ) -> Result<()>;
    /// Kernel-matrix product (see [`Backend::kernel_product`]).
    #[allow(clippy::too_many_arguments)]
    fn kernel_product(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<Vec<f64>>;
    /// Part `spec.part` of [`Ops::kernel_product`] (see
    /// [`kernel_product::Part`]); by default row blocks of A.
    #[allow(clippy::too_many_arguments)]
    fn kernel_product_part(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<kernel_product::Part<f64>> {
        self.kernel_product(a, b, d, m, r, spec, len)
            .map(kernel_product::Part::Rows)
    }
    /// [`Ops::kernel_product_part`] with f32 operands and result.
    #[allow(clippy::too_many_arguments)]
    fn kernel_product_part_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<kernel_product::Part<f32>> {
        self.kernel_product_f32(a, b, d, m, r, spec, len)
            .map(kernel_product::Part::Rows)
    }
    /// Whether [`Ops::kernel_upper_part`] computes (the CPU), so that Φ
    /// costs half a kernel product.
    fn has_upper_half(&self) -> bool {
        false
    }
    /// Part `spec.part` of the upper-half product of K(A, A) (see
    /// [`kernel_product::cpu_upper_part`]), or None where the backend has
    /// none (the GPU: callers take the whole product instead).
    fn kernel_upper_part(
        &self,
        _a: &[f64],
        _d: usize,
        _m: &[f64],
        _r: usize,
        _spec: &kernel_product::Spec,
    ) -> Result<Option<kernel_product::Upper<f64>>> {
        Ok(None)
    }
    /// [`Ops::kernel_upper_part`] with f32 operands and result.
    fn kernel_upper_part_f32(
        &self,
        _a: &[f32],
        _d: usize,
        _m: &[f32],
        _r: usize,
        _spec: &kernel_product::Spec,
    ) -> Result<Option<kernel_product::Upper<f32>>> {
        Ok(None)
    }
    /// Keeps rows of `cols` values for [`Ops::kernel_product_held`]; by
    /// default in host memory.
    fn hold_product_operand(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        Ok(Held::host(data, cols))
    }
    /// [`Ops::kernel_product`] of A with itself and a held M; by default
    /// on M's values.
    fn kernel_product_held(
        &self,
        a: &[f64],
        d: usize,
        m: &Held,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<Vec<f64>> {
        held::kernel_product_on_values(self, a, d, m, spec, len)
    }
    /// Whether [`Ops::laplacian_form_held`] computes (on a GPU, a
    /// hardware adapter).
    fn forms_laplacian(&self) -> bool {
        false
    }
    /// Xᵀ(Diag(K1) − K)X·Y for K = K(Z, Z) of `spec` on the rows Z = M·B
    /// (r × c; Y = I, c = r, where `y` is None), with M = [X | 1] and Xᵀ
    /// held, computed where they are held; None where this device does
    /// not (the caller takes the product instead).
    fn laplacian_form_held(
        &self,
        _m: &Held,
        _mt: &Held,
        _b: (&[f64], usize),
        _y: Option<(&[f64], usize)>,
        _spec: &kernel_product::Spec,
    ) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
    /// [`Ops::kernel_product`] with f32 operands and result.
    #[allow(clippy::too_many_arguments)]
    fn kernel_product_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<Vec<f32>>;
    /// Dense product with epilogue `act(A B + bias)`.
    #[allow(clippy::too_many_arguments)]
    fn dense(
        &self,
        a: &[f64],
        k: usize,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
        n: usize,
    ) -> Result<Vec<f64>>;
    /// Keeps rows of `cols` values where this device computes (see
    /// [`Held`]); by default in host memory.
    fn hold(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        Ok(Held::host(data, cols))
    }
    /// [`Ops::dense`] of held rows, the result held; by default on the
    /// host values.
    fn dense_held(
        &self,
        a: &Held,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
    ) -> Result<Held> {
        held::dense_on_values(self, a, b, m, bias, act)
    }
    /// [`Ops::normal_eq`] of held rows.
    fn normal_eq_held(&self, h: &Held, z: &Held) -> Result<Vec<f64>> {
        held::normal_eq_on_values(self, h, z)
    }
    /// [`Ops::row_residual`] of held rows.
    fn row_residual_held(&self, a: &Held, b: &Held) -> Result<Vec<f64>> {
        held::row_residual_on_values(self, a, b)
    }
    /// [`Ops::conv_forward`] of held rows, the result held.
    fn conv_forward_held(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &Held,
        act: dense::Act,
    ) -> Result<Held> {
        held::conv_forward_on_values(self, (sh, kernels, bias), h, act)
    }
    /// [`Ops::conv_transpose`] of held rows, the result held.
    fn conv_transpose_held(&self, sh: &ConvShape, kernels: &[f64], z: &Held) -> Result<Held> {
        held::conv_transpose_on_values(self, sh, kernels, z)
    }
    /// [`Ops::conv_normal_eq`] of held rows.
    fn conv_normal_eq_held(&self, sh: &ConvShape, h: &Held, zhat: &Held) -> Result<Vec<f64>> {
        held::conv_normal_eq_on_values(self, sh, h, zhat)
    }
    /// A conv-unpool layer's act(W h + c) for `n` items.
    fn conv_forward(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &[f64],
        act: dense::Act,
        n: usize,
    ) -> Result<Vec<f64>>;
    /// A conv-unpool layer's Wᵀ z for `n` items.
    fn conv_transpose(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        z: &[f64],
        n: usize,
    ) -> Result<Vec<f64>>;
    /// A conv-unpool layer's per-kernel normal equations.
    fn conv_normal_eq(&self, sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Result<Vec<f64>>;
    /// Normal equations `[H,1]ᵀ[H,1,Z]`.
    fn normal_eq(&self, h: &[f64], p: usize, z: &[f64], q: usize) -> Result<Vec<f64>>;
    /// Per-row (L1, squared L2) residuals.
    fn row_residual(&self, a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>>;
    /// Leaky ReLU (or its inverse) of every element.
    fn leaky_relu(&self, x: &[f64], alpha: f64, inverse: bool) -> Result<Vec<f64>>;
    /// An RRR engine for batches of `items` items whose sums over items go
    /// through `collective`.
    fn rrr_engine(
        &self,
        problem: &RrrProblem,
        items: usize,
        collective: Arc<dyn Collective>,
    ) -> Result<Box<dyn RrrEngine>>;
}

/// An opened device at a fixed precision, with the collective its sums
/// over items go through.
#[derive(Clone, Debug)]
pub struct Backend {
    ops: Arc<dyn Ops>,
    precision: Precision,
    collective: Arc<dyn Collective>,
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
        let ops: Arc<dyn Ops> = match precision {
            Precision::F32 => Arc::new(cpu::CpuOps::<f32>::new()),
            Precision::F64 => Arc::new(cpu::CpuOps::<f64>::new()),
        };
        Backend {
            ops,
            precision,
            collective: Arc::new(Local),
        }
    }

    /// A GPU backend on an opened context.
    pub fn gpu(ctx: Arc<GpuContext>, precision: Precision) -> Self {
        Backend {
            ops: Arc::new(gpu::GpuOps::new(ctx, precision)),
            precision,
            collective: Arc::new(Local),
        }
    }

    /// The same device with sums over items going through `collective`.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// Working precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// CPU or GPU.
    pub fn kind(&self) -> DeviceKind {
        self.ops.kind()
    }

    /// The collective that sums over the items of all processes.
    pub fn collective(&self) -> &dyn Collective {
        self.collective.as_ref()
    }

    /// A handle on [`Backend::collective`] to keep.
    pub fn collective_handle(&self) -> Arc<dyn Collective> {
        self.collective.clone()
    }

    /// The GPU context, if this is a GPU backend.
    pub fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        self.ops.gpu_context()
    }

    /// Human-readable device description.
    pub fn describe(&self) -> String {
        self.ops.describe()
    }

    /// Projects a batch of bilinear problems.
    pub fn project_bilinear(
        &self,
        batch: &project_bilinear::BilinearBatch,
    ) -> Result<project_bilinear::BilinearOut> {
        self.ops.project_bilinear(batch)
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
        self.ops.project_activation(kinds, margins, x, y, b)
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
    /// page faults when allocated afresh for every σ tried). Pass the same
    /// slice as `a` and `b` for K(A, A) (the CPU symmetric path keys on it).
    pub fn gauss_kernel_into(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
        k: &mut Vec<f64>,
    ) -> Result<()> {
        let len = match (a.len().checked_div(d), b.len().checked_div(d)) {
            (Some(n), Some(m)) => n * m,
            _ => 0,
        };
        self.ops
            .gauss_kernel_into(a, b, d, sigma, zero_diag, len, k)
    }

    /// Kernel-matrix product `(w ∘ f(A, B)) M` (m × r row-major, one more
    /// column with `spec.squares`) without forming the m × n matrix; see
    /// [`crate::kernels::kernel_product`]. Every process holds all of A, B
    /// and M; the work is split into one part per process (row blocks of
    /// A, or runs of the symmetric K(A, A) path's partial sums) and the
    /// parts meet in the collective with the bits of one process. Pass the same slice as `a`
    /// and `b` for K(A, A) (the CPU symmetric path keys on it).
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
        if self.collective.world() == 1 {
            return self.ops.kernel_product(a, b, d, m, r, spec, len);
        }
        let part = self
            .ops
            .kernel_product_part(a, b, d, m, r, &self.part_of(spec), len)?;
        // Partials are added in the working precision, as one process adds them.
        match self.precision {
            Precision::F64 => self.join_parts(part, na, spec.width(r)),
            Precision::F32 => {
                let part = part.map(|v| v.into_iter().map(|x| x as f32).collect());
                let out = self.join_parts(part, na, spec.width(r))?;
                Ok(out.into_iter().map(f64::from).collect())
            }
        }
    }

    /// The whole kernel product from every process's part of it (`na`
    /// output rows of `w` columns).
    fn join_parts<T: Real>(
        &self,
        part: kernel_product::Part<T>,
        na: usize,
        w: usize,
    ) -> Result<Vec<T>> {
        let c = self.collective.as_ref();
        match part {
            kernel_product::Part::Rows(mut out) => {
                c.allreduce_sum(&mut out)?;
                Ok(out)
            }
            kernel_product::Part::Partials { thin, data } => {
                let all = c.all_gather(&data)?;
                let mut out = vec![T::ZERO; na * w];
                kernel_product::add_partials(&all, na, w, thin, &mut out);
                Ok(out)
            }
        }
    }

    /// [`Backend::kernel_product`] with f32 operands and result, for a caller
    /// that keeps its data in f32 (the ISM Φ build of an f32 fit): an f32
    /// CPU backend then converts nothing; other backends widen to f64.
    pub fn kernel_product_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Vec<f32>> {
        let (na, _) = kernel_product::shape(a, b, d, m, r, spec);
        let len = na * spec.width(r);
        if self.collective.world() == 1 {
            return self.ops.kernel_product_f32(a, b, d, m, r, spec, len);
        }
        let part = self
            .ops
            .kernel_product_part_f32(a, b, d, m, r, &self.part_of(spec), len)?;
        self.join_parts(part, na, spec.width(r))
    }

    /// Keeps `data` (rows of `cols` values) as the M of
    /// [`Backend::kernel_product_held`]: on a GPU, in one device buffer
    /// where a binding holds it (else on the host, and each product sends
    /// it), so that an M used by many products crosses to the device once.
    pub fn hold_product_operand(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(Error::Input(format!(
                "{} values do not make rows of {cols}",
                data.len()
            )));
        }
        self.ops.hold_product_operand(data, cols)
    }

    /// [`Backend::kernel_product`] of A's rows with themselves and a held M
    /// ([`Backend::hold_product_operand`], one row per row of A): the
    /// same values, without sending M again. A data-parallel run takes the
    /// parts of [`Backend::kernel_product`] on M's values.
    pub fn kernel_product_held(
        &self,
        a: &[f64],
        d: usize,
        m: &Held,
        spec: &kernel_product::Spec,
    ) -> Result<Vec<f64>> {
        if d == 0 || !a.len().is_multiple_of(d) || a.len() / d != m.rows() {
            return Err(Error::Input(format!(
                "kernel product: {} values in rows of {d} against {} rows of M",
                a.len(),
                m.rows()
            )));
        }
        kernel_product::shape::<f64>(a, a, d, &[], 0, spec);
        if self.collective.world() > 1 {
            return self.kernel_product(a, a, d, &m.values()?, m.cols(), spec);
        }
        let len = m.rows() * spec.width(m.cols());
        self.ops.kernel_product_held(a, d, m, spec, len)
    }

    /// Whether [`Backend::laplacian_form_held`] computes here: a GPU on a
    /// hardware adapter, one process. (A software adapter returns the
    /// product instead: the host's GEMM forms Φ faster than it.)
    pub fn forms_laplacian(&self) -> bool {
        self.collective.world() == 1 && self.ops.forms_laplacian()
    }

    /// Xᵀ(Diag(K1) − K)X (r × r, symmetric), or with `y` = (Y, c) (r × c,
    /// row-major) the product Xᵀ(Diag(K1) − K)X·Y (r × c, row-major), for
    /// K = K(Z, Z) of `spec` (no squares column) on the rows Z = M·B (n × q,
    /// B (r + 1) × q row-major), M = [X | 1] held as for
    /// [`Backend::kernel_product_held`] and Xᵀ held (r rows of n): on a GPU
    /// Z, X·Y, the product, the form and the product by Xᵀ run where M is,
    /// and only B and Y go in and the result comes back. A Gaussian
    /// kernel's values do not change when Z is shifted by a row vector, so
    /// B's last row can centre Z (see
    /// [`crate::kernels::kernel_product::gpu_laplacian_form`]). None where
    /// the backend has no such path (see [`Backend::forms_laplacian`]) or
    /// the operands are held on the host: the caller then takes
    /// [`Backend::kernel_product_held`] or its own path.
    pub fn laplacian_form_held(
        &self,
        m: &Held,
        mt: &Held,
        (b, q): (&[f64], usize),
        y: Option<(&[f64], usize)>,
        spec: &kernel_product::Spec,
    ) -> Result<Option<Vec<f64>>> {
        let (n, w) = (m.rows(), m.cols());
        let r = w.saturating_sub(1);
        let y_fits = y.is_none_or(|(y, c)| c > 0 && y.len() == r * c);
        if q == 0 || b.len() != w * q || (mt.rows(), mt.cols()) != (r, n) || spec.squares || !y_fits
        {
            return Err(Error::Input(format!(
                "Laplacian form: B of {} values for M {n} × {w} and {q} columns, Xᵀ {} × {}, Y of {} values",
                b.len(),
                mt.rows(),
                mt.cols(),
                y.map_or(0, |(y, _)| y.len())
            )));
        }
        kernel_product::check_labels(n, n, spec);
        if !self.forms_laplacian() {
            return Ok(None);
        }
        self.ops.laplacian_form_held(m, mt, (b, q), y, spec)
    }

    /// Whether every process's backend has the upper-half product
    /// ([`Backend::kernel_product_upper`] returns Some): the CPU. A
    /// collective call in a data-parallel run, so that processes on
    /// different devices take the same path.
    pub fn has_upper_half(&self) -> Result<bool> {
        let mine = self.ops.has_upper_half();
        let c = self.collective.as_ref();
        if c.world() == 1 {
            return Ok(mine);
        }
        let mut count = [f64::from(u8::from(mine))];
        c.allreduce_sum_f64(&mut count)?;
        Ok(count[0] == c.world() as f64)
    }

    /// The upper-half product of the symmetric K(A, A) (see
    /// [`kernel_product::cpu_upper_part`]): (U·M, n × r; Uᵀ·1, n), or None
    /// where some process's backend has no such path (see
    /// [`Backend::has_upper_half`]). Every process holds all of A and
    /// M; the processes split the row tiles and meet in the collective with
    /// the bits of one process.
    pub fn kernel_product_upper(
        &self,
        a: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        upper_check(a, d, m, r, spec)?;
        if !self.has_upper_half()? {
            return Ok(None);
        }
        match self
            .ops
            .kernel_upper_part(a, d, m, r, &self.part_of(spec))?
        {
            Some(part) => self.join_upper(part, a.len() / d.max(1)).map(Some),
            None => Ok(None),
        }
    }

    /// [`Backend::kernel_product_upper`] with f32 operands and result.
    pub fn kernel_product_upper_f32(
        &self,
        a: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        upper_check(a, d, m, r, spec)?;
        if !self.has_upper_half()? {
            return Ok(None);
        }
        match self
            .ops
            .kernel_upper_part_f32(a, d, m, r, &self.part_of(spec))?
        {
            Some(part) => self.join_upper(part, a.len() / d.max(1)).map(Some),
            None => Ok(None),
        }
    }

    /// The whole upper-half product from every process's part: rows by a
    /// sum (each row is one part's), column sums gathered and added in order.
    fn join_upper<T: Real>(
        &self,
        part: kernel_product::Upper<T>,
        n: usize,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let c = self.collective.as_ref();
        let kernel_product::Upper { mut rows, col_sums } = part;
        let all = if c.world() == 1 {
            col_sums
        } else {
            c.allreduce_sum(&mut rows)?;
            c.all_gather(&col_sums)?
        };
        let mut sums = vec![T::ZERO; n];
        kernel_product::add_partials(&all, n, 1, false, &mut sums);
        Ok((rows, sums))
    }

    /// `spec` restricted to this process's part of the work.
    fn part_of<'s>(&self, spec: &kernel_product::Spec<'s>) -> kernel_product::Spec<'s> {
        kernel_product::Spec {
            part: (self.collective.rank(), self.collective.world()),
            ..*spec
        }
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
        self.ops.dense(a, k, b, m, bias, act, n)
    }

    /// Keeps `data` (rows of `cols` values) where the device computes, for
    /// the operations on [`Held`] rows: on a GPU it crosses to the device
    /// once, however many operations use it.
    pub fn hold(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(Error::Input(format!(
                "{} values do not make rows of {cols}",
                data.len()
            )));
        }
        self.ops.hold(data, cols)
    }

    /// [`Backend::dense`] of held rows (k = `a.cols()`), the result held
    /// where it was computed.
    pub fn dense_held(
        &self,
        a: &Held,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
    ) -> Result<Held> {
        if m == 0 || b.len() != a.cols() * m || bias.len() != m {
            return Err(Error::Input(format!(
                "dense product: {} weights and {} biases for {} inputs and {m} outputs",
                b.len(),
                bias.len(),
                a.cols()
            )));
        }
        self.ops.dense_held(a, b, m, bias, act)
    }

    /// [`Backend::normal_eq`] of held rows H and Z (the same items),
    /// summed over the items of every process.
    pub fn normal_eq_held(&self, h: &Held, z: &Held) -> Result<Vec<f64>> {
        if h.rows() != z.rows() {
            return Err(Error::Input(format!(
                "normal equations: {} latent rows against {} target rows",
                h.rows(),
                z.rows()
            )));
        }
        let mut c = self.ops.normal_eq_held(h, z)?;
        self.collective.allreduce_sum_f64(&mut c)?;
        Ok(c)
    }

    /// [`Backend::row_residual`] of held rows of one shape.
    pub fn row_residual_held(&self, a: &Held, b: &Held) -> Result<Vec<f64>> {
        if (a.rows(), a.cols()) != (b.rows(), b.cols()) {
            return Err(Error::Input(format!(
                "row residuals: {} × {} against {} × {}",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols()
            )));
        }
        self.ops.row_residual_held(a, b)
    }

    /// [`Backend::conv_forward`] of held rows h, the result held where it
    /// was computed.
    pub fn conv_forward_held(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &Held,
        act: dense::Act,
    ) -> Result<Held> {
        conv_check_held(sh, kernels, Some(bias), h, sh.d_in())?;
        self.ops.conv_forward_held(sh, kernels, bias, h, act)
    }

    /// [`Backend::conv_transpose`] of held rows z, the result held where it
    /// was computed.
    pub fn conv_transpose_held(&self, sh: &ConvShape, kernels: &[f64], z: &Held) -> Result<Held> {
        conv_check_held(sh, kernels, None, z, sh.d_out())?;
        self.ops.conv_transpose_held(sh, kernels, z)
    }

    /// [`Backend::conv_normal_eq`] of held H and Ẑ, summed over the items
    /// of every process.
    pub fn conv_normal_eq_held(&self, sh: &ConvShape, h: &Held, zhat: &Held) -> Result<Vec<f64>> {
        if (h.cols(), zhat.cols(), h.rows()) != (sh.d_in(), sh.d_out(), zhat.rows()) {
            return Err(Error::Input(format!(
                "conv normal equations: {} × {} latents and {} × {} targets do not make items of {} and {}",
                h.rows(),
                h.cols(),
                zhat.rows(),
                zhat.cols(),
                sh.d_in(),
                sh.d_out()
            )));
        }
        let mut c = self.ops.conv_normal_eq_held(sh, h, zhat)?;
        self.collective.allreduce_sum_f64(&mut c)?;
        Ok(c)
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
        self.ops.conv_forward(sh, kernels, bias, h, act, n)
    }

    /// A conv-unpool layer's transposed operator Wᵀ z for the rows of z
    /// (n × d_out).
    pub fn conv_transpose(&self, sh: &ConvShape, kernels: &[f64], z: &[f64]) -> Result<Vec<f64>> {
        conv_check(sh, kernels, None, z, sh.d_out())?;
        let n = z.len() / sh.d_out().max(1);
        self.ops.conv_transpose(sh, kernels, z, n)
    }

    /// A conv-unpool layer's per-kernel normal equations over every
    /// position of every item of H (n × d_in) against Ẑ (n × d_out):
    /// (P+1) × (P+1+oc) row-major, summed over the items of every process.
    pub fn conv_normal_eq(&self, sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Result<Vec<f64>> {
        let n = h.len().checked_div(sh.d_in()).unwrap_or(0);
        if h.len() != n * sh.d_in() || zhat.len() != n * sh.d_out() {
            return Err(Error::Input(format!(
                "conv normal equations: {} latent and {} target values do not make items of {} and {}",
                h.len(),
                zhat.len(),
                sh.d_in(),
                sh.d_out()
            )));
        }
        let mut c = self.ops.conv_normal_eq(sh, h, zhat)?;
        self.collective.allreduce_sum_f64(&mut c)?;
        Ok(c)
    }

    /// Normal equations `[H,1]ᵀ[H,1,Z]` ((p+1) × (p+1+q) row-major) of H
    /// (N × p) and Z (N × q), summed over item blocks and over the items of
    /// every process (see [`crate::kernels::normal_eq`]).
    pub fn normal_eq(&self, h: &[f64], p: usize, z: &[f64], q: usize) -> Result<Vec<f64>> {
        let mut c = self.ops.normal_eq(h, p, z, q)?;
        self.collective.allreduce_sum_f64(&mut c)?;
        Ok(c)
    }

    /// Per-row (L1, squared L2) residuals of two n × d matrices.
    pub fn row_residual(&self, a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>> {
        self.ops.row_residual(a, b, d)
    }

    /// Leaky ReLU with slope α (or its inverse) of every element.
    pub fn leaky_relu(&self, x: &[f64], alpha: f64, inverse: bool) -> Result<Vec<f64>> {
        self.ops.leaky_relu(x, alpha, inverse)
    }

    /// An RRR engine for a problem with batches of `items` items (this
    /// process's share), summing over the items of every process.
    pub fn rrr_engine(&self, problem: &RrrProblem, items: usize) -> Result<Box<dyn RrrEngine>> {
        self.ops.rrr_engine(problem, items, self.collective.clone())
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
    conv_check_len(sh, kernels, bias, x.len(), d)
}

/// [`conv_check`] of held rows, which must be `d` wide.
fn conv_check_held(
    sh: &ConvShape,
    kernels: &[f64],
    bias: Option<&[f64]>,
    x: &Held,
    d: usize,
) -> Result<()> {
    if x.cols() != d {
        return Err(Error::Input(format!(
            "conv-unpool {sh:?}: rows of {} values where the layer takes {d}",
            x.cols()
        )));
    }
    conv_check_len(sh, kernels, bias, x.rows() * d, d)
}

/// [`conv_check`] of `len` input values.
fn conv_check_len(
    sh: &ConvShape,
    kernels: &[f64],
    bias: Option<&[f64]>,
    len: usize,
    d: usize,
) -> Result<()> {
    let ok = kernels.len() == sh.conv_channels() * sh.patch()
        && bias.is_none_or(|b| b.len() == sh.conv_channels())
        && len.checked_rem(d).is_none_or(|r| r == 0)
        && (d > 0 || len == 0);
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "conv-unpool {sh:?}: {} kernel values, {} biases, {} inputs do not fit",
            kernels.len(),
            bias.map_or(0, <[f64]>::len),
            len
        )))
    }
}

/// Shape checks of the upper-half product: rows of width `d`, M one row
/// of `r` per row of A, the same labels on both sides, no squares column.
fn upper_check<T>(a: &[T], d: usize, m: &[T], r: usize, spec: &kernel_product::Spec) -> Result<()> {
    let n = a.len().checked_div(d);
    let ok = n.is_some_and(|n| n * d == a.len() && m.len() == n * r)
        && !spec.squares
        && spec
            .gamma
            .is_none_or(|g| std::ptr::eq(g.la, g.lb) && Some(g.la.len()) == n);
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "upper-half kernel product: {} values in rows of {d}, {} values of M in rows of {r} do not fit (or it was asked for squares or two label sets)",
            a.len(),
            m.len()
        )))
    }
}
