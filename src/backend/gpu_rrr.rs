//! RRR iterations on a wgpu device: buffers and bind groups are created
//! once; each iteration is one submit of seven dispatches; RRR_err values
//! land in a device-side history that is read back only every
//! `check_every` iterations (or when the history fills).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::buffer::Elem;
use crate::gpu::{BindRef, Dispatch, GpuBuffer, GpuContext};
use crate::kernels::{consensus_nodes, normalize_weights, reduce_rows, rrr_step};
use crate::real::Precision;
use crate::rrr::{Consensus, IterReport, RrrEngine, RrrProblem, RrrState};

/// Iterations whose RRR_err the device keeps before a readback is forced.
const HISTORY: usize = 256;

pub(crate) struct GpuRrr {
    ctx: Arc<GpuContext>,
    items: usize,
    labels: Vec<u32>,
    edges: usize,
    nodes: usize,
    has_bias: bool,
    omega: f64,
    // state and data
    x: GpuBuffer,
    w: GpuBuffer,
    y: GpuBuffer,
    b: GpuBuffer,
    data: GpuBuffer,
    labels_buf: GpuBuffer,
    // A-projection
    xa: GpuBuffer,
    ya: GpuBuffer,
    ba: GpuBuffer,
    wa: GpuBuffer,
    // reductions
    hist: GpuBuffer,
    hist_parts: usize,
    counters: GpuBuffer,
    step_scalars: GpuBuffer,
    err_final_uniform: GpuBuffer,
    err_final_params: reduce_rows::Params,
    // prepared dispatches, in order
    d_nodes: Dispatch,
    d_reduce_w: Dispatch,
    d_normalize: Dispatch,
    d_reduce_b: Option<Dispatch>,
    d_step: Dispatch,
    d_err1: Dispatch,
    d_err2: Dispatch,
    // buffers only referenced by bind groups must stay alive
    _keep: Vec<GpuBuffer>,
}

impl GpuRrr {
    pub(crate) fn new(ctx: &Arc<GpuContext>, precision: Precision, p: &RrrProblem, items: usize) -> Result<Self> {
        let (e, n, kk) = (p.edges(), p.nodes, items);
        let j = p.bil.len();
        let real = Elem::Real(precision);
        let max_bind = ctx.max_binding_bytes();
        let largest = (e.max(n) * kk) as u64 * precision.bytes() as u64;
        if largest > max_bind {
            return Err(Error::Limit {
                what: format!(
                    "the RRR state of {e} edges x {kk} items (split the batch: --batch {})",
                    (max_bind / (e.max(n) as u64 * precision.bytes() as u64)).max(1)
                ),
                needed: largest,
                limit: max_bind,
            });
        }
        let u32buf = |v: &[u32]| ctx.upload_u32(v);
        let out_ptr = u32buf(&p.out_ptr)?;
        let out_edges = u32buf(&p.out_edges)?;
        let kind = u32buf(&p.kind)?;
        let param = u32buf(&p.param)?;
        let in_ptr = u32buf(&p.in_ptr)?;
        let src = u32buf(&p.src)?;
        let bil = u32buf(&p.bil)?;
        let group_ptr = u32buf(&p.group_ptr)?;
        let group_edges = u32buf(&p.group_edges)?;
        let metric = ctx.upload_real(&p.metric, precision)?;
        let node_scalars = ctx.upload_real(&[p.class_margin, p.act_margin], precision)?;
        let norm_scalars = ctx.upload_real(&[p.omega], precision)?;
        let step_scalars = ctx.upload_real(&[1.0, p.omega], precision)?;

        let x = ctx.alloc(e * kk, real)?;
        let w = ctx.alloc(e * kk, real)?;
        let y = ctx.alloc(n * kk, real)?;
        let b = ctx.alloc(n * kk, real)?;
        let data = ctx.alloc(n * kk, real)?;
        let labels_buf = ctx.alloc(kk, Elem::U32)?;
        let xa = ctx.alloc(n * kk, real)?;
        let ya = ctx.alloc(n * kk, real)?;
        let ba = ctx.alloc(n * kk, real)?;
        let wa = ctx.alloc(e, real)?;
        let parts = reduce_rows::parts(kk);
        let wpart = ctx.alloc(e * parts, real)?;
        let bpart = ctx.alloc(n * parts, real)?;
        let err = ctx.alloc(j * kk, real)?;
        let errpart = ctx.alloc(j * parts, real)?;
        let hist_parts = reduce_rows::parts(j * parts);
        let hist = ctx.alloc(HISTORY * hist_parts, real)?;
        let counters = ctx.upload_u32(&[0, 0])?;

        let node_params = ctx.uniform(&consensus_nodes::Params {
            items: kk as u32,
            nodes: n as u32,
            pad: [0; 2],
        })?;
        let d_nodes = ctx.prepare(
            &consensus_nodes::KERNEL,
            precision,
            &[
                (&node_params).into(),
                (&node_scalars).into(),
                (&out_ptr).into(),
                (&out_edges).into(),
                (&kind).into(),
                (&param).into(),
                (&labels_buf).into(),
                (&x).into(),
                (&y).into(),
                (&b).into(),
                (&data).into(),
                (&xa).into(),
                (&ya).into(),
                (&ba).into(),
            ],
            (n * kk) as u64,
        )?;
        let rp = |rows: usize, items: usize, mode: u32, parts_total: usize| reduce_rows::Params {
            rows: rows as u32,
            items: items as u32,
            parts: reduce_rows::parts(items) as u32,
            mode,
            parts_total: parts_total as u32,
            parts_offset: 0,
            pad: [0; 2],
        };
        let reduce = |u: &GpuBuffer, z: &GpuBuffer, a: &GpuBuffer, out: &GpuBuffer, rows: usize, items: usize| {
            ctx.prepare(
                &reduce_rows::KERNEL,
                precision,
                &[u.into(), z.into(), a.into(), out.into()],
                (rows * reduce_rows::parts(items) * 256) as u64,
            )
        };
        let rw_params = ctx.uniform(&rp(e, kk, reduce_rows::MODE_SUM, parts))?;
        let d_reduce_w = reduce(&rw_params, &w, &w, &wpart, e, kk)?;
        let norm_params = ctx.uniform(&normalize_weights::Params {
            groups: (p.group_ptr.len() - 1) as u32,
            items_total: kk as u32,
            parts_total: parts as u32,
            clamp: p.clamp_weights as u32,
        })?;
        let d_normalize = ctx.prepare(
            &normalize_weights::KERNEL,
            precision,
            &[
                (&norm_params).into(),
                (&norm_scalars).into(),
                (&group_ptr).into(),
                (&group_edges).into(),
                (&wpart).into(),
                (&wa).into(),
            ],
            (p.group_ptr.len() - 1) as u64,
        )?;
        let rb_params = ctx.uniform(&rp(n, kk, reduce_rows::MODE_REFLECT, parts))?;
        let d_reduce_b = if p.has_bias {
            Some(reduce(&rb_params, &b, &ba, &bpart, n, kk)?)
        } else {
            None
        };
        let step_params = ctx.uniform(&rrr_step::Params {
            items: kk as u32,
            bil_nodes: j as u32,
            parts_total: parts as u32,
            mode: p.mode,
            has_bias: p.has_bias as u32,
            items_total: kk as u32,
            pad: [0; 2],
        })?;
        let binds: Vec<BindRef<'_>> = vec![
            (&step_params).into(),
            (&step_scalars).into(),
            (&bil).into(),
            (&in_ptr).into(),
            (&src).into(),
            (&metric).into(),
            (&x).into(),
            (&w).into(),
            (&xa).into(),
            (&wa).into(),
            (&y).into(),
            (&ya).into(),
            (&b).into(),
            (&ba).into(),
            (&bpart).into(),
            (&err).into(),
            (&counters).into(),
        ];
        let d_step = ctx.prepare(&rrr_step::KERNEL, precision, &binds, (j * kk) as u64)?;
        let e1_params = ctx.uniform(&rp(j, kk, reduce_rows::MODE_SUM, parts))?;
        let d_err1 = reduce(&e1_params, &err, &err, &errpart, j, kk)?;
        let err_final_params = rp(1, j * parts, reduce_rows::MODE_SUM, hist_parts);
        let err_final_uniform = ctx.uniform(&err_final_params)?;
        let d_err2 = reduce(&err_final_uniform, &errpart, &errpart, &hist, 1, j * parts)?;
        Ok(GpuRrr {
            ctx: ctx.clone(),
            items: kk,
            labels: vec![0; kk],
            edges: e,
            nodes: n,
            has_bias: p.has_bias,
            omega: p.omega,
            x,
            w,
            y,
            b,
            data,
            labels_buf,
            xa,
            ya,
            ba,
            wa,
            hist,
            hist_parts,
            counters,
            step_scalars,
            err_final_uniform,
            err_final_params,
            d_nodes,
            d_reduce_w,
            d_normalize,
            d_reduce_b,
            d_step,
            d_err1,
            d_err2,
            _keep: vec![
                out_ptr, out_edges, kind, param, in_ptr, src, bil, group_ptr, group_edges, metric,
                node_scalars, norm_scalars, wpart, bpart, err, errpart, node_params, rw_params,
                norm_params, rb_params, step_params, e1_params,
            ],
        })
    }

    fn read_history(&self, count: usize, out: &mut Vec<f64>) -> Result<()> {
        let raw = self.hist.read_real_range(0, count * self.hist_parts)?;
        let inv_k = 1.0 / self.items.max(1) as f64;
        out.extend(
            raw.chunks(self.hist_parts)
                .map(|c| (c.iter().sum::<f64>() * inv_k).max(0.0).sqrt()),
        );
        Ok(())
    }
}

impl RrrEngine for GpuRrr {
    fn load(&mut self, s: &RrrState) -> Result<()> {
        if s.items != self.items || s.x.len() != self.edges * self.items || s.y.len() != self.nodes * self.items {
            return Err(Error::Input("RRR state shapes do not match the engine".into()));
        }
        if ![&s.x, &s.w, &s.y, &s.b, &s.data]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
        {
            return Err(Error::Input("RRR state holds NaN or infinity".into()));
        }
        self.x.write_real(&s.x);
        self.w.write_real(&s.w);
        self.y.write_real(&s.y);
        self.b.write_real(&s.b);
        self.data.write_real(&s.data);
        self.labels_buf.write_u32(&s.labels);
        self.labels = s.labels.clone();
        Ok(())
    }

    fn iterate(&mut self, iters: usize, beta: f64, tol: f64, check_every: usize) -> Result<IterReport> {
        self.step_scalars.write_real(&[beta, self.omega]);
        self.counters.write_u32(&[0, 0]);
        let check_every = check_every.clamp(1, HISTORY);
        let mut rep = IterReport::default();
        let mut pending = 0;
        for it in 0..iters {
            self.err_final_params.parts_offset = (pending * self.hist_parts) as u32;
            self.err_final_uniform.write_uniform(&self.err_final_params);
            let mut rec = self.ctx.recorder();
            rec.dispatch(&self.d_nodes);
            rec.dispatch(&self.d_reduce_w);
            rec.dispatch(&self.d_normalize);
            if let Some(d) = &self.d_reduce_b {
                rec.dispatch(d);
            }
            rec.dispatch(&self.d_step);
            rec.dispatch(&self.d_err1);
            rec.dispatch(&self.d_err2);
            rec.submit()?;
            pending += 1;
            rep.iterations += 1;
            let last = it + 1 == iters;
            let check = tol > 0.0 && rep.iterations % check_every == 0;
            if last || check || pending == HISTORY {
                let start = rep.errors.len();
                self.read_history(pending, &mut rep.errors)?;
                pending = 0;
                if tol > 0.0 {
                    if let Some(first) = rep.errors[start..].iter().position(|&e| e < tol) {
                        log::debug!("RRR_err < tol first at iteration {}", start + first + 1);
                        rep.converged = true;
                        break;
                    }
                }
            }
        }
        let c = self.counters.read_u32()?;
        rep.degenerate = c[0] as u64;
        rep.not_converged = c[1] as u64;
        Ok(rep)
    }

    fn state(&mut self) -> Result<RrrState> {
        Ok(RrrState {
            items: self.items,
            x: self.x.read_real()?,
            w: self.w.read_real()?,
            y: self.y.read_real()?,
            b: self.b.read_real()?,
            data: self.data.read_real()?,
            labels: self.labels.clone(),
        })
    }

    fn consensus(&mut self) -> Result<Consensus> {
        let mut rec = self.ctx.recorder();
        rec.dispatch(&self.d_nodes);
        rec.dispatch(&self.d_reduce_w);
        rec.dispatch(&self.d_normalize);
        rec.submit()?;
        let _ = self.has_bias;
        Ok(Consensus {
            x: self.xa.read_real()?,
            w: self.wa.read_real()?,
            y: self.ya.read_real()?,
            b: self.ba.read_real()?,
        })
    }
}
