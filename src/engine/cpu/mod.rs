//! The native CPU device (Rust + rayon), generic over the working
//! precision: inputs arrive in f64 and are rounded once to `T` (no copy
//! for f64), results are widened back.

mod rrr;

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Collective, DeviceKind, Ops, RrrEngine};
use crate::error::Result;
use crate::kernels::conv_unpool::{self, ConvShape};
use crate::kernels::{
    dense, gauss_kernel, kernel_product, leaky_relu, normal_eq, project_activation,
    project_bilinear, row_residual,
};
use crate::problem::RrrProblem;
use crate::real::Real;

/// Items per chunk of the conv-unpool normal equations: bounds the gathered
/// patches (items · side² · P values).
const CONV_BLOCK: usize = 500;

/// The CPU device in precision `T`.
#[derive(Debug, Default)]
pub struct CpuOps<T>(PhantomData<T>);

impl<T> CpuOps<T> {
    /// The CPU device.
    pub fn new() -> Self {
        CpuOps(PhantomData)
    }
}

/// `a` and `b` in precision `T`, converting `b` separately only when it is
/// not the same slice as `a` (the symmetric K(A, A) paths key on identity).
fn pair<'a, T: Real>(
    a: &'a [f64],
    b: &'a [f64],
) -> (std::borrow::Cow<'a, [T]>, Option<std::borrow::Cow<'a, [T]>>) {
    let ca = T::from_f64s(a);
    let cb = (!std::ptr::eq(a, b)).then(|| T::from_f64s(b));
    (ca, cb)
}

impl<T: Real> Ops for CpuOps<T> {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }

    fn describe(&self) -> String {
        let t = rayon::current_num_threads();
        format!("cpu ({t} thread{})", if t == 1 { "" } else { "s" })
    }

    fn project_bilinear(
        &self,
        batch: &project_bilinear::BilinearBatch,
    ) -> Result<project_bilinear::BilinearOut> {
        Ok(project_bilinear::project_batch_reference::<T>(batch))
    }

    fn project_activation(
        &self,
        kinds: &[u32],
        margins: &[f64],
        x: &mut [f64],
        y: &mut [f64],
        b: &mut [f64],
    ) -> Result<()> {
        for i in 0..kinds.len() {
            let (p, q, r) = project_activation::project(
                kinds[i],
                T::from_f64(x[i]),
                T::from_f64(y[i]),
                T::from_f64(b[i]),
                T::from_f64(margins[i]),
            );
            (x[i], y[i], b[i]) = (p.to_f64(), q.to_f64(), r.to_f64());
        }
        Ok(())
    }

    fn gauss_kernel_into(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        sigma: f64,
        zero_diag: bool,
        len: usize,
        k: &mut Vec<f64>,
    ) -> Result<()> {
        let (ca, cb) = pair::<T>(a, b);
        let cb = cb.as_deref().unwrap_or(&ca);
        T::fill_f64s(k, len, |out| {
            gauss_kernel::cpu(&ca, cb, d, T::from_f64(sigma), zero_diag, out)
        });
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
        len: usize,
    ) -> Result<Vec<f64>> {
        let (ca, cb) = pair::<T>(a, b);
        let cb = cb.as_deref().unwrap_or(&ca);
        let mut out = vec![T::ZERO; len];
        kernel_product::cpu(&ca, cb, d, &T::from_f64s(m), r, spec, &mut out);
        Ok(T::into_f64s(out))
    }

    fn kernel_product_part(
        &self,
        a: &[f64],
        b: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
        _len: usize,
    ) -> Result<kernel_product::Part<f64>> {
        let (ca, cb) = pair::<T>(a, b);
        let cb = cb.as_deref().unwrap_or(&ca);
        Ok(kernel_product::cpu_part(&ca, cb, d, &T::from_f64s(m), r, spec).map(T::into_f64s))
    }

    fn kernel_product_part_f32(
        &self,
        a: &[f32],
        b: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
        _len: usize,
    ) -> Result<kernel_product::Part<f32>> {
        let ca = T::from_f32s(a);
        let cb = (!std::ptr::eq(a, b)).then(|| T::from_f32s(b));
        let cb = cb.as_deref().unwrap_or(&ca);
        Ok(kernel_product::cpu_part(&ca, cb, d, &T::from_f32s(m), r, spec).map(T::into_f32s))
    }

    fn has_upper_half(&self) -> bool {
        true
    }

    fn kernel_upper_part(
        &self,
        a: &[f64],
        d: usize,
        m: &[f64],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Option<kernel_product::Upper<f64>>> {
        let (a, m) = (T::from_f64s(a), T::from_f64s(m));
        Ok(Some(
            kernel_product::cpu_upper_part(&a, d, &m, r, spec).map(T::into_f64s),
        ))
    }

    fn kernel_upper_part_f32(
        &self,
        a: &[f32],
        d: usize,
        m: &[f32],
        r: usize,
        spec: &kernel_product::Spec,
    ) -> Result<Option<kernel_product::Upper<f32>>> {
        let (a, m) = (T::from_f32s(a), T::from_f32s(m));
        Ok(Some(
            kernel_product::cpu_upper_part(&a, d, &m, r, spec).map(T::into_f32s),
        ))
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
        let ca = T::from_f32s(a);
        let cb = (!std::ptr::eq(a, b)).then(|| T::from_f32s(b));
        let cb = cb.as_deref().unwrap_or(&ca);
        let mut out = vec![T::ZERO; len];
        kernel_product::cpu(&ca, cb, d, &T::from_f32s(m), r, spec, &mut out);
        Ok(T::into_f32s(out))
    }

    fn dense(
        &self,
        a: &[f64],
        k: usize,
        b: &[f64],
        m: usize,
        bias: &[f64],
        act: dense::Act,
        n: usize,
    ) -> Result<Vec<f64>> {
        let mut out = vec![T::ZERO; n * m];
        dense::cpu(
            &T::from_f64s(a),
            k,
            &T::from_f64s(b),
            m,
            &T::from_f64s(bias),
            act,
            &mut out,
        );
        Ok(T::into_f64s(out))
    }

    fn conv_forward(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        bias: &[f64],
        h: &[f64],
        act: dense::Act,
        n: usize,
    ) -> Result<Vec<f64>> {
        let mut out = vec![T::ZERO; n * sh.d_out()];
        conv_unpool::cpu_forward(sh, kernels, bias, &T::from_f64s(h), act, &mut out);
        Ok(T::into_f64s(out))
    }

    fn conv_transpose(
        &self,
        sh: &ConvShape,
        kernels: &[f64],
        z: &[f64],
        n: usize,
    ) -> Result<Vec<f64>> {
        let mut out = vec![T::ZERO; n * sh.d_in()];
        conv_unpool::cpu_transpose(sh, kernels, &T::from_f64s(z), &mut out);
        Ok(T::into_f64s(out))
    }

    fn conv_normal_eq(&self, sh: &ConvShape, h: &[f64], zhat: &[f64]) -> Result<Vec<f64>> {
        Ok(conv_unpool::cpu_normal_eq::<T>(sh, h, zhat, CONV_BLOCK))
    }

    fn normal_eq(&self, h: &[f64], p: usize, z: &[f64], q: usize) -> Result<Vec<f64>> {
        Ok(normal_eq::cpu(&T::from_f64s(h), p, &T::from_f64s(z), q))
    }

    fn row_residual(&self, a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>> {
        Ok(row_residual::cpu(&T::from_f64s(a), &T::from_f64s(b), d))
    }

    fn leaky_relu(&self, x: &[f64], alpha: f64, inverse: bool) -> Result<Vec<f64>> {
        let mut v = T::from_f64s(x).into_owned();
        leaky_relu::cpu(&mut v, alpha, inverse);
        Ok(T::into_f64s(v))
    }

    fn rrr_engine(
        &self,
        problem: &RrrProblem,
        items: usize,
        collective: Arc<dyn Collective>,
    ) -> Result<Box<dyn RrrEngine>> {
        Ok(Box::new(rrr::CpuRrr::<T>::new(problem, items, collective)?))
    }
}
