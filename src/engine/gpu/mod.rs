//! The wgpu device: each operation is its kernel's GPU launch
//! (`crate::kernels::<name>::gpu`), sized against the adapter's limits.

mod rrr;

pub use rrr::{TRAFFIC_PER_ITEM_EDGE, rrr_iterations, traffic_model, traffic_per_item_edge};
// What a run's summary reports of the device's work, for the layers above.
pub use crate::gpu::profile::enabled as profiling;
pub use crate::gpu::{KernelTime, kernel_times, work_counts};

use std::sync::Arc;

use super::{Collective, DeviceKind, Held, Ops, RrrEngine, held};
use crate::error::Result;
use crate::gpu::{GpuContext, RowTiles};
use crate::kernels::conv_unpool::{self, ConvShape};
use crate::kernels::{
    dense, gauss_kernel, kernel_product, leaky_relu, normal_eq, project_activation,
    project_bilinear, row_residual,
};
use crate::problem::RrrProblem;
use crate::real::Precision;

/// Items per block of the normal equations (each block's partial sums are
/// read back and added on the host in block order).
const NORMAL_EQ_BLOCK: usize = 8192;

/// A GPU device at a fixed precision.
#[derive(Debug)]
pub struct GpuOps {
    ctx: Arc<GpuContext>,
    precision: Precision,
}

impl GpuOps {
    /// The device of an opened context.
    pub fn new(ctx: Arc<GpuContext>, precision: Precision) -> Self {
        GpuOps { ctx, precision }
    }
}

impl GpuOps {
    /// The tile height of held rows of `cols` values: the normal
    /// equations' item block where it fits one binding, so that every
    /// operand of a layer's solves shares its tiles and the device sums in
    /// the host path's blocks.
    fn held_tile_rows(&self, cols: usize) -> usize {
        normal_eq::gpu_block(&self.ctx, self.precision, cols, cols, NORMAL_EQ_BLOCK)
    }
}

impl Ops for GpuOps {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Gpu
    }

    fn describe(&self) -> String {
        let s = self.ctx.summary();
        format!("gpu: {} ({}, {})", s.name, s.backend, s.device_type)
    }

    fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        Some(&self.ctx)
    }

    fn project_bilinear(
        &self,
        batch: &project_bilinear::BilinearBatch,
    ) -> Result<project_bilinear::BilinearOut> {
        project_bilinear::gpu(&self.ctx, self.precision, batch)
    }

    fn project_activation(
        &self,
        kinds: &[u32],
        margins: &[f64],
        x: &mut [f64],
        y: &mut [f64],
        b: &mut [f64],
    ) -> Result<()> {
        project_activation::gpu(&self.ctx, self.precision, kinds, margins, x, y, b)
    }

    fn gauss_kernel_into(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
        _len: usize,
        k: &mut Vec<f64>,
    ) -> Result<()> {
        *k = gauss_kernel::gpu(&self.ctx, self.precision, a, b, d, sigma, zero_diag)?;
        Ok(())
    }

    fn kernel_product(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
        _len: usize,
    ) -> Result<Vec<f64>> {
        kernel_product::gpu(&self.ctx, self.precision, a, b, d, m, r, spec)
    }

    fn hold_product_operand(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        let rows = data.len() / cols;
        if self.ctx.fit_rows(self.precision, cols) < rows {
            return Ok(Held::host(data, cols));
        }
        let tiles = RowTiles::upload(&self.ctx, self.precision, &data, cols, rows.max(1))?;
        Ok(Held::device(tiles))
    }

    fn kernel_product_held(
        &self,
        a: &[f64],
        d: usize,
        m: &Held,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<Vec<f64>> {
        match m.tiles() {
            Some(t) if t.tiles().len() <= 1 => {
                kernel_product::gpu_held_m(&self.ctx, self.precision, a, d, t, spec)
            }
            _ => held::kernel_product_on_values(self, a, d, m, spec, len),
        }
    }

    fn forms_laplacian(&self) -> bool {
        // GRADFREE_DEVICE_FORM=1 (or 0) overrides: tests take the device
        // path on lavapipe.
        match std::env::var("GRADFREE_DEVICE_FORM").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !self.ctx.summary().software,
        }
    }

    fn laplacian_form_held(
        &self,
        m: &Held,
        mt: &Held,
        b: (&[f64], usize),
        y: Option<(&[f64], usize)>,
        spec: &kernel_product::Spec,
    ) -> Result<Option<Vec<f64>>> {
        let (Some(mtiles), Some(ttiles)) = (m.tiles(), mt.tiles()) else {
            return Ok(None);
        };
        if mtiles.tiles().len() > 1 || ttiles.tiles().len() > 1 {
            return Ok(None);
        }
        let held = (mtiles, ttiles);
        let form = kernel_product::gpu_laplacian_form(&self.ctx, self.precision, held, b, y, spec)?;
        let (r, c) = (mt.rows(), y.map_or(mt.rows(), |(_, c)| c));
        let at = |g: &[f64], i: usize, j: usize| g[i * (c + 1) + j];
        Ok(form.map(|g| match y {
            // The r × c block; Φ itself symmetrized (the device's sums are not).
            Some(_) => (0..r * c).map(|ij| at(&g, ij / c, ij % c)).collect(),
            None => (0..r * r)
                .map(|ij| {
                    let (i, j) = (ij / r, ij % r);
                    0.5 * (at(&g, i, j) + at(&g, j, i))
                })
                .collect(),
        }))
    }

    fn kernel_product_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
        len: usize,
    ) -> Result<Vec<f32>> {
        let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let wa = wide(a);
        let wb = (!std::ptr::eq(a, b)).then(|| wide(b));
        let wb = wb.as_deref().unwrap_or(&wa);
        let out = self.kernel_product(&wa, wb, d, &wide(m), r, spec, len)?;
        Ok(out.into_iter().map(|x| x as f32).collect())
    }

    fn dense(
        &self,
        a: &[f64],
        k: usize,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
        _n: usize,
    ) -> Result<Vec<f64>> {
        dense::gpu(&self.ctx, self.precision, a, k, b, m, bias, act)
    }

    fn hold(&self, data: Vec<f64>, cols: usize) -> Result<Held> {
        let tile_rows = self.held_tile_rows(cols);
        let tiles = RowTiles::upload(&self.ctx, self.precision, &data, cols, tile_rows)?;
        Ok(Held::device(tiles))
    }

    fn dense_held(
        &self,
        a: &Held,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
    ) -> Result<Held> {
        match a.tiles() {
            Some(t) if self.ctx.fit_rows(self.precision, m) >= t.tile_rows() => Ok(Held::device(
                dense::gpu_rows(&self.ctx, t, b, m, bias, act)?,
            )),
            _ => held::dense_on_values(self, a, b, m, bias, act),
        }
    }

    fn normal_eq_held(&self, h: &Held, z: &Held) -> Result<Vec<f64>> {
        let (p, q) = (h.cols(), z.cols());
        // The device path sums in the host path's blocks, or not at all.
        let block = normal_eq::gpu_block(&self.ctx, self.precision, p, q, NORMAL_EQ_BLOCK);
        match (h.tiles(), z.tiles()) {
            (Some(ht), Some(zt)) if ht.tile_rows() == block && zt.tile_rows() == block => {
                normal_eq::gpu_rows(&self.ctx, ht, zt)
            }
            _ => held::normal_eq_on_values(self, h, z),
        }
    }

    fn row_residual_held(&self, a: &Held, b: &Held) -> Result<Vec<f64>> {
        match (a.tiles(), b.tiles()) {
            (Some(at), Some(bt)) if at.tile_rows() == bt.tile_rows() => {
                row_residual::gpu_rows(&self.ctx, at, bt)
            }
            _ => held::row_residual_on_values(self, a, b),
        }
    }

    fn conv_forward_held(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &Held,
        act: dense::Act,
    ) -> Result<Held> {
        match h.tiles() {
            Some(t) if self.ctx.fit_rows(self.precision, sh.d_out()) >= t.tile_rows() => {
                Ok(Held::device(conv_unpool::gpu_forward_tiles(
                    &self.ctx, sh, kernels, bias, t, act,
                )?))
            }
            _ => held::conv_forward_on_values(self, (sh, kernels, bias), h, act),
        }
    }

    fn conv_transpose_held(&self, sh: &ConvShape, kernels: &[f64], z: &Held) -> Result<Held> {
        match z.tiles() {
            Some(t) if self.ctx.fit_rows(self.precision, sh.d_in()) >= t.tile_rows() => Ok(
                Held::device(conv_unpool::gpu_transpose_tiles(&self.ctx, sh, kernels, t)?),
            ),
            _ => held::conv_transpose_on_values(self, sh, kernels, z),
        }
    }

    fn conv_normal_eq_held(&self, sh: &ConvShape, h: &Held, zhat: &Held) -> Result<Vec<f64>> {
        // The device path sums in the host path's chunks, or not at all.
        let width = sh.d_in().max(sh.d_out());
        let chunk =
            conv_unpool::gpu_chunk(&self.ctx, self.precision, width, h.rows(), NORMAL_EQ_BLOCK);
        match (h.tiles(), zhat.tiles()) {
            (Some(ht), Some(zt))
                if ht.tile_rows().min(h.rows()) == chunk && zt.tile_rows() == ht.tile_rows() =>
            {
                conv_unpool::gpu_normal_eq_tiles(&self.ctx, sh, ht, zt)
            }
            _ => held::conv_normal_eq_on_values(self, sh, h, zhat),
        }
    }

    fn conv_forward(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &[f64],
        act: dense::Act,
        _n: usize,
    ) -> Result<Vec<f64>> {
        conv_unpool::gpu_forward(
            &self.ctx,
            self.precision,
            sh,
            kernels,
            bias,
            h,
            act,
            usize::MAX,
        )
    }

    fn conv_transpose(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        z: &[f64],
        _n: usize,
    ) -> Result<Vec<f64>> {
        conv_unpool::gpu_transpose(&self.ctx, self.precision, sh, kernels, z, usize::MAX)
    }

    fn conv_normal_eq(&self, sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Result<Vec<f64>> {
        conv_unpool::gpu_normal_eq(&self.ctx, self.precision, sh, h, zhat, NORMAL_EQ_BLOCK)
    }

    fn normal_eq(&self, h: &[f64], p: usize, z: &[f64], q: usize) -> Result<Vec<f64>> {
        normal_eq::gpu(&self.ctx, self.precision, h, p, z, q, NORMAL_EQ_BLOCK)
    }

    fn row_residual(&self, a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>> {
        row_residual::gpu(&self.ctx, self.precision, a, b, d)
    }

    fn leaky_relu(&self, x: &[f64], alpha: f64, inverse: bool) -> Result<Vec<f64>> {
        leaky_relu::gpu(&self.ctx, self.precision, x, alpha, inverse)
    }

    fn rrr_engine(
        &self,
        problem: &RrrProblem,
        items: usize,
        collective: Arc<dyn Collective>,
    ) -> Result<Box<dyn RrrEngine>> {
        Ok(Box::new(rrr::GpuRrr::new(
            &self.ctx,
            self.precision,
            problem,
            items,
            collective,
        )?))
    }
}
