//! One-off launches of single kernels on a GPU context: upload, one
//! dispatch, read back. Used by the tests that compare each WGSL kernel with
//! its CPU twin, by benchmarks, and by `Backend`'s batch projections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::gpu::buffer::Elem;
use crate::gpu::{BindRef, GpuBuffer, GpuContext, Kernel};
use crate::kernels::{
    consensus_nodes, conv_unpool, copy, dense, gauss_kernel, kernel_product, leaky_relu, normal_eq,
    normalize_weights, project_activation, project_bilinear, reduce_rows, row_residual, rrr_step,
    rrr_update,
};
use crate::real::Precision;

fn run_one(ctx: &GpuContext, d: &crate::gpu::Dispatch) -> Result<()> {
    let mut rec = ctx.recorder();
    rec.dispatch(d);
    rec.submit()
}

/// Gaussian kernel matrix of the rows of `a` against those of `b` (both
/// with `d` columns), row-major n × m, computed in row tiles that each fit
/// one binding (and the output buffer is reused across tiles).
pub fn gauss_kernel(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    sigma: f64,
    zero_diag: bool,
) -> Result<Vec<f64>> {
    if d == 0 || a.is_empty() || b.is_empty() {
        return Ok(vec![]);
    }
    let m = b.len() / d;
    let rows = (ctx.max_binding_bytes() / prec.bytes() as u64 / m as u64).max(1) as usize;
    gauss_kernel_tiled(ctx, prec, a, b, d, sigma, zero_diag, rows)
}

/// [`gauss_kernel`] in tiles of `tile_rows` rows of K.
#[allow(clippy::too_many_arguments)]
pub fn gauss_kernel_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    sigma: f64,
    zero_diag: bool,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    if d == 0 || a.is_empty() || b.is_empty() {
        return Ok(vec![]);
    }
    let (n, m) = (a.len() / d, b.len() / d);
    let tile_rows = tile_rows.clamp(1, n);
    let scal = ctx.upload_real(&[1.0 / (2.0 * sigma * sigma)], prec)?;
    let ab = ctx.upload_real(a, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let kb = ctx.alloc(tile_rows * m, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * m);
    let mut row0 = 0;
    while row0 < n {
        let rows = tile_rows.min(n - row0);
        let params = ctx.uniform(&gauss_kernel::Params {
            rows: rows as u32,
            row0: row0 as u32,
            m: m as u32,
            d: d as u32,
            zero_diag: zero_diag as u32,
            pad: [0; 3],
        })?;
        let disp = ctx.prepare(
            &gauss_kernel::KERNEL,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&ab).into(),
                (&bb).into(),
                (&kb).into(),
            ],
            (rows * m) as u64,
        )?;
        run_one(ctx, &disp)?;
        out.extend(kb.read_real_range(0, rows * m)?);
        row0 += rows;
    }
    Ok(out)
}

/// Kernel-matrix product `out = (w ∘ f(A, B)) M` (see
/// [`kernel_product`]), m × r row-major, in row tiles of A whose output
/// fits one binding.
#[allow(clippy::too_many_arguments)]
pub fn kernel_product(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    m: &[f64],
    r: usize,
    spec: &kernel_product::Spec,
) -> Result<Vec<f64>> {
    let w = spec.width(r).max(1) as u64;
    let rows = (ctx.max_binding_bytes() / prec.bytes() as u64 / w).max(1) as usize;
    kernel_product_tiled(ctx, prec, a, b, d, m, r, spec, rows)
}

/// [`kernel_product`] in tiles of `tile_rows` rows of A.
#[allow(clippy::too_many_arguments)]
pub fn kernel_product_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    m: &[f64],
    r: usize,
    spec: &kernel_product::Spec,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    let (na, nb) = kernel_product::shape(a, b, d, m, r, spec);
    let w = spec.width(r);
    if na == 0 || w == 0 {
        return Ok(vec![]);
    }
    if nb == 0 {
        return Ok(vec![0.0; na * w]);
    }
    let tile_rows = tile_rows.clamp(1, na);
    let scal = ctx.upload_real(&spec.scalars(), prec)?;
    let ab = ctx.upload_real(a, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    // An empty M still needs a binding.
    let mb = ctx.upload_real(if m.is_empty() { &[0.0] } else { m }, prec)?;
    let labels: Vec<u32> = match spec.gamma {
        Some(g) => g.la.iter().chain(g.lb).copied().collect(),
        None => vec![0],
    };
    let lb = ctx.upload_u32(&labels)?;
    let ob = ctx.alloc(tile_rows * w, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(na * r);
    let mut row0 = 0;
    // One dispatch and readback per tile; the kernel tiles are built on the fly.
    while row0 < na {
        let rows = tile_rows.min(na - row0);
        let params = ctx.uniform(&kernel_product::Params {
            rows: rows as u32,
            row0: row0 as u32,
            n: nb as u32,
            d: d as u32,
            r: r as u32,
            func: matches!(spec.func, kernel_product::Func::Dist) as u32,
            zero_diag: spec.zero_diag as u32,
            use_gamma: spec.gamma.is_some() as u32,
            lb_off: na as u32,
            squares: spec.squares as u32,
            pad: [0; 2],
        })?;
        let (ti, tc) = kernel_product::gpu_tile(w);
        let groups = rows.div_ceil(ti) * w.div_ceil(tc);
        let disp = ctx.prepare(
            &kernel_product::KERNEL,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&ab).into(),
                (&bb).into(),
                (&mb).into(),
                (&lb).into(),
                (&ob).into(),
            ],
            (groups * kernel_product::KERNEL.workgroup as usize) as u64,
        )?;
        run_one(ctx, &disp)?;
        out.extend(ob.read_real_range(0, rows * w)?);
        row0 += rows;
    }
    Ok(out)
}

/// Dense product with epilogue `act(A B + bias)` (see [`dense`]), in row
/// tiles of A whose input and output fit one binding each.
#[allow(clippy::too_many_arguments)]
pub fn dense(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    k: usize,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: dense::Act,
) -> Result<Vec<f64>> {
    let widest = k.max(m).max(1) as u64;
    let rows = (ctx.max_binding_bytes() / prec.bytes() as u64 / widest).max(1) as usize;
    dense_tiled(ctx, prec, a, k, b, m, bias, act, rows)
}

/// [`dense`] in tiles of `tile_rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn dense_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    k: usize,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: dense::Act,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    let n = dense::shape(a, k, b, m, bias);
    if n == 0 || m == 0 {
        return Ok(vec![0.0; n * m]);
    }
    let tile_rows = tile_rows.clamp(1, n);
    let (code, alpha) = act.code();
    let scal = ctx.upload_real(&[alpha], prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let cb = ctx.upload_real(bias, prec)?;
    let ab = ctx.alloc(tile_rows * k, Elem::Real(prec))?;
    let ob = ctx.alloc(tile_rows * m, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * m);
    let mut row0 = 0;
    while row0 < n {
        let rows = tile_rows.min(n - row0);
        ab.write_real_at(0, &a[row0 * k..(row0 + rows) * k]);
        let params = ctx.uniform(&dense::Params {
            rows: rows as u32,
            k: k as u32,
            m: m as u32,
            act: code,
        })?;
        let groups = rows.div_ceil(dense::GPU_TILE) * m.div_ceil(dense::GPU_TILE);
        let disp = ctx.prepare(
            &dense::KERNEL,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&ab).into(),
                (&bb).into(),
                (&cb).into(),
                (&ob).into(),
            ],
            (groups * dense::KERNEL.workgroup as usize) as u64,
        )?;
        run_one(ctx, &disp)?;
        out.extend(ob.read_real_range(0, rows * m)?);
        row0 += rows;
    }
    Ok(out)
}

/// Normal equations `C = [H,1]ᵀ[H,1,Z]` ((p+1) × (p+1+q), see
/// [`normal_eq`]) over item blocks of at most `block` items; each block's
/// partial C is read back and added in f64 on the host in block order.
pub fn normal_eq(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    h: &[f64],
    p: usize,
    z: &[f64],
    q: usize,
    block: usize,
) -> Result<Vec<f64>> {
    let n = normal_eq::shape(h, p, z, q);
    let cols = p + 1 + q;
    let mut total = vec![0.0; (p + 1) * cols];
    if n == 0 {
        return Ok(total);
    }
    let widest = p.max(q).max(1) as u64;
    let fit = (ctx.max_binding_bytes() / prec.bytes() as u64 / widest).max(1) as usize;
    let block = block.clamp(1, fit).min(n);
    let hb = ctx.alloc((block * p).max(1), Elem::Real(prec))?;
    let zb = ctx.alloc((block * q).max(1), Elem::Real(prec))?;
    let cb = ctx.alloc((p + 1) * cols, Elem::Real(prec))?;
    let groups = (p + 1).div_ceil(normal_eq::GPU_TILE) * cols.div_ceil(normal_eq::GPU_TILE);
    let mut i0 = 0;
    while i0 < n {
        let items = block.min(n - i0);
        if p > 0 {
            hb.write_real_at(0, &h[i0 * p..(i0 + items) * p]);
        }
        if q > 0 {
            zb.write_real_at(0, &z[i0 * q..(i0 + items) * q]);
        }
        let params = ctx.uniform(&normal_eq::Params {
            items: items as u32,
            p: p as u32,
            q: q as u32,
            pad: 0,
        })?;
        let disp = ctx.prepare(
            &normal_eq::KERNEL,
            prec,
            &[(&params).into(), (&hb).into(), (&zb).into(), (&cb).into()],
            (groups * normal_eq::KERNEL.workgroup as usize) as u64,
        )?;
        run_one(ctx, &disp)?;
        let part = cb.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
        i0 += items;
    }
    Ok(total)
}

/// Per-row (L1, squared L2) residuals of two n × d matrices, in row
/// chunks that fit one binding.
pub fn row_residual(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
) -> Result<Vec<f64>> {
    let n = a.len().checked_div(d).unwrap_or(0);
    let rows = (ctx.max_binding_bytes() / prec.bytes() as u64 / d.max(1) as u64).max(1) as usize;
    let mut out = Vec::with_capacity(2 * n);
    for r0 in (0..n).step_by(rows.max(1)) {
        let r1 = (r0 + rows).min(n);
        out.extend(row_residual_chunk(
            ctx,
            prec,
            &a[r0 * d..r1 * d],
            &b[r0 * d..r1 * d],
            d,
        )?);
    }
    Ok(out)
}

fn row_residual_chunk(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
) -> Result<Vec<f64>> {
    let n = a.len() / d;
    if n == 0 {
        return Ok(vec![]);
    }
    let ab = ctx.upload_real(a, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let ob = ctx.alloc(2 * n, Elem::Real(prec))?;
    let params = ctx.uniform(&row_residual::Params {
        rows: n as u32,
        d: d as u32,
        pad: [0; 2],
    })?;
    let disp = ctx.prepare(
        &row_residual::KERNEL,
        prec,
        &[(&params).into(), (&ab).into(), (&bb).into(), (&ob).into()],
        n as u64,
    )?;
    run_one(ctx, &disp)?;
    ob.read_real()
}

/// Leaky ReLU (or its inverse) of every element, in chunks that fit one
/// binding.
pub fn leaky_relu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    x: &[f64],
    alpha: f64,
    inverse: bool,
) -> Result<Vec<f64>> {
    let chunk = (ctx.max_binding_bytes() / prec.bytes() as u64).max(1) as usize;
    let mut out = Vec::with_capacity(x.len());
    for part in x.chunks(chunk) {
        out.extend(leaky_relu_chunk(ctx, prec, part, alpha, inverse)?);
    }
    Ok(out)
}

fn leaky_relu_chunk(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    x: &[f64],
    alpha: f64,
    inverse: bool,
) -> Result<Vec<f64>> {
    if x.is_empty() {
        return Ok(vec![]);
    }
    let scal = ctx.upload_real(&[alpha], prec)?;
    let xb = ctx.upload_real(x, prec)?;
    let params = ctx.uniform(&leaky_relu::Params {
        len: x.len() as u32,
        inverse: inverse as u32,
        pad: [0; 2],
    })?;
    let disp = ctx.prepare(
        &leaky_relu::KERNEL,
        prec,
        &[(&params).into(), (&scal).into(), (&xb).into()],
        x.len() as u64,
    )?;
    run_one(ctx, &disp)?;
    xb.read_real()
}

/// Batched bilinear projection.
pub fn project_bilinear(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    batch: &project_bilinear::BilinearBatch,
) -> Result<project_bilinear::BilinearOut> {
    let np = batch.problems();
    let params = ctx.uniform(&project_bilinear::Params {
        problems: np as u32,
        pad: [0; 3],
    })?;
    let ptr = ctx.upload_u32(&batch.ptr)?;
    let x = ctx.upload_real(&batch.x, prec)?;
    let w = ctx.upload_real(&batch.w, prec)?;
    let y = ctx.upload_real(&batch.y, prec)?;
    let om = ctx.upload_real(&batch.omega, prec)?;
    let g = ctx.upload_real(&batch.g, prec)?;
    let xo = ctx.alloc(batch.x.len(), Elem::Real(prec))?;
    let wo = ctx.alloc(batch.w.len(), Elem::Real(prec))?;
    let yo = ctx.alloc(np, Elem::Real(prec))?;
    let uo = ctx.alloc(np, Elem::Real(prec))?;
    let so = ctx.alloc(np, Elem::U32)?;
    let d = ctx.prepare(
        &project_bilinear::KERNEL,
        prec,
        &[
            (&params).into(),
            (&ptr).into(),
            (&x).into(),
            (&w).into(),
            (&y).into(),
            (&om).into(),
            (&g).into(),
            (&xo).into(),
            (&wo).into(),
            (&yo).into(),
            (&uo).into(),
            (&so).into(),
        ],
        np as u64,
    )?;
    run_one(ctx, &d)?;
    Ok(project_bilinear::BilinearOut {
        x: xo.read_real()?,
        w: wo.read_real()?,
        y: yo.read_real()?,
        u: uo.read_real()?,
        status: so.read_u32()?,
    })
}

/// Element-wise activation/class projection, in place.
pub fn project_activation(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kinds: &[u32],
    margins: &[f64],
    x: &mut [f64],
    y: &mut [f64],
    b: &mut [f64],
) -> Result<()> {
    let params = ctx.uniform(&rrr_update::Params {
        n: kinds.len() as u32,
        pad: [0; 3],
    })?;
    let kb = ctx.upload_u32(kinds)?;
    let mb = ctx.upload_real(margins, prec)?;
    let xb = ctx.upload_real(x, prec)?;
    let yb = ctx.upload_real(y, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let d = ctx.prepare(
        &project_activation::KERNEL,
        prec,
        &[
            (&params).into(),
            (&kb).into(),
            (&mb).into(),
            (&xb).into(),
            (&yb).into(),
            (&bb).into(),
        ],
        kinds.len() as u64,
    )?;
    run_one(ctx, &d)?;
    x.copy_from_slice(&xb.read_real()?);
    y.copy_from_slice(&yb.read_real()?);
    b.copy_from_slice(&bb.read_real()?);
    Ok(())
}

/// Node consensus; returns (xa, ya, ba).
pub fn consensus_nodes(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    inp: &consensus_nodes::NodeInputs<'_, f64>,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let n = inp.kind.len();
    let kk = inp.items;
    let params = ctx.uniform(&consensus_nodes::Params {
        items: kk as u32,
        nodes: n as u32,
        pad: [0; 2],
    })?;
    let sc = ctx.upload_real(&[inp.class_margin, inp.act_margin], prec)?;
    let bufs_u = [inp.out_ptr, inp.out_edges, inp.kind, inp.param, inp.labels]
        .iter()
        .map(|v| ctx.upload_u32(v))
        .collect::<Result<Vec<_>>>()?;
    let bufs_r = [inp.x, inp.y, inp.b, inp.data]
        .iter()
        .map(|v| ctx.upload_real(v, prec))
        .collect::<Result<Vec<_>>>()?;
    let outs = (0..3)
        .map(|_| ctx.alloc(n * kk, Elem::Real(prec)))
        .collect::<Result<Vec<_>>>()?;
    let mut binds: Vec<BindRef<'_>> = vec![(&params).into(), (&sc).into()];
    binds.extend(bufs_u.iter().map(BindRef::from));
    binds.extend(bufs_r.iter().map(BindRef::from));
    binds.extend(outs.iter().map(BindRef::from));
    let d = ctx.prepare(&consensus_nodes::KERNEL, prec, &binds, (n * kk) as u64)?;
    run_one(ctx, &d)?;
    Ok((
        outs[0].read_real()?,
        outs[1].read_real()?,
        outs[2].read_real()?,
    ))
}

/// Partial row sums with `parts_total = parts(items)` and offset 0, by the
/// kernel the engines pick for this row length.
pub fn reduce_rows(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    z: &[f64],
    a: &[f64],
    rows: usize,
    items: usize,
    mode: u32,
) -> Result<Vec<f64>> {
    let (kernel, _) = reduce_rows::kernel_for(items);
    reduce_rows_with(ctx, prec, kernel, z, a, rows, items, mode)
}

/// Partial row sums by a given variant (`reduce_rows::KERNEL` or `SERIAL`).
#[allow(clippy::too_many_arguments)]
pub fn reduce_rows_with(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    z: &[f64],
    a: &[f64],
    rows: usize,
    items: usize,
    mode: u32,
) -> Result<Vec<f64>> {
    let per_part = if kernel.entry == reduce_rows::SERIAL.entry {
        1
    } else {
        256
    };
    let parts = reduce_rows::parts(items);
    let params = ctx.uniform(&reduce_rows::Params {
        rows: rows as u32,
        items: items as u32,
        parts: parts as u32,
        mode,
        parts_total: parts as u32,
        parts_offset: 0,
        pad: [0; 2],
    })?;
    let zb = ctx.upload_real(z, prec)?;
    let ab = ctx.upload_real(a, prec)?;
    let out = ctx.alloc(rows * parts, Elem::Real(prec))?;
    let d = ctx.prepare(
        kernel,
        prec,
        &[(&params).into(), (&zb).into(), (&ab).into(), (&out).into()],
        (rows * parts) as u64 * per_part,
    )?;
    run_one(ctx, &d)?;
    out.read_real()
}

/// Weight normalization from partial sums.
#[allow(clippy::too_many_arguments)]
pub fn normalize_weights(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    group_ptr: &[u32],
    group_edges: &[u32],
    partial: &[f64],
    parts_total: usize,
    items_total: usize,
    clamp: bool,
    omega: f64,
    edges: usize,
) -> Result<Vec<f64>> {
    let groups = group_ptr.len().saturating_sub(1);
    let params = ctx.uniform(&normalize_weights::Params {
        groups: groups as u32,
        items_total: items_total as u32,
        parts_total: parts_total as u32,
        clamp: clamp as u32,
    })?;
    let sc = ctx.upload_real(&[omega], prec)?;
    let gp = ctx.upload_u32(group_ptr)?;
    let ge = ctx.upload_u32(group_edges)?;
    let pb = ctx.upload_real(partial, prec)?;
    let wa = ctx.alloc(edges, Elem::Real(prec))?;
    let d = ctx.prepare(
        &normalize_weights::KERNEL,
        prec,
        &[
            (&params).into(),
            (&sc).into(),
            (&gp).into(),
            (&ge).into(),
            (&pb).into(),
            (&wa).into(),
        ],
        groups as u64,
    )?;
    run_one(ctx, &d)?;
    wa.read_real()
}

/// Outputs of one fused RRR step.
#[derive(Clone, Debug)]
pub struct StepOut {
    /// Updated x.
    pub x: Vec<f64>,
    /// Updated w.
    pub w: Vec<f64>,
    /// Updated y.
    pub y: Vec<f64>,
    /// Updated b.
    pub b: Vec<f64>,
    /// err [J][K].
    pub err: Vec<f64>,
    /// [degenerate, not converged].
    pub counters: Vec<u32>,
}

/// One fused RRR step (bias consensus given as a per-node mean).
pub fn rrr_step(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    inp: &rrr_step::StepInputs<'_, f64>,
    x: &[f64],
    w: &[f64],
    y: &[f64],
    b: &[f64],
) -> Result<StepOut> {
    let kk = inp.items;
    let j = inp.bil.len();
    let n = inp.metric.len();
    // Feed the bias mean as a single partial per node with items_total = 1.
    let (has_bias, bmean) = match inp.bias_mean {
        Some(m) => (1, m.to_vec()),
        None => (0, vec![0.0; n]),
    };
    let params = ctx.uniform(&rrr_step::Params {
        items: kk as u32,
        bil_nodes: j as u32,
        parts_total: 1,
        mode: inp.mode,
        has_bias,
        items_total: 1,
        pad: [0; 2],
    })?;
    let up = |v: &[f64]| ctx.upload_real(v, prec);
    let sc = up(&[inp.beta, inp.omega])?;
    let bil = ctx.upload_u32(inp.bil)?;
    let in_ptr = ctx.upload_u32(inp.in_ptr)?;
    let src = ctx.upload_u32(inp.src)?;
    let metric = up(inp.metric)?;
    let (xb, wb, yb, bb) = (up(x)?, up(w)?, up(y)?, up(b)?);
    let (xa, wa, ya, ba) = (up(inp.xa)?, up(inp.wa)?, up(inp.ya)?, up(inp.ba)?);
    let bpart = up(&bmean)?;
    let err = ctx.alloc(j * kk, Elem::Real(prec))?;
    let counters = ctx.upload_u32(&[0, 0])?;
    let bufs: [&GpuBuffer; 17] = [
        &params, &sc, &bil, &in_ptr, &src, &metric, &xb, &wb, &xa, &wa, &yb, &ya, &bb, &ba, &bpart,
        &err, &counters,
    ];
    let binds: Vec<_> = bufs.iter().map(|&b| b.into()).collect();
    let d = ctx.prepare(&rrr_step::KERNEL, prec, &binds, (j * kk) as u64)?;
    run_one(ctx, &d)?;
    Ok(StepOut {
        x: xb.read_real()?,
        w: wb.read_real()?,
        y: yb.read_real()?,
        b: bb.read_real()?,
        err: err.read_real()?,
        counters: counters.read_u32()?,
    })
}

/// Dense RRR update; returns (z, err).
pub fn rrr_update(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    beta: f64,
    pa: &[f64],
    pb: &[f64],
    z: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let params = ctx.uniform(&rrr_update::Params {
        n: z.len() as u32,
        pad: [0; 3],
    })?;
    let sc = ctx.upload_real(&[beta], prec)?;
    let (ab, bb, zb) = (
        ctx.upload_real(pa, prec)?,
        ctx.upload_real(pb, prec)?,
        ctx.upload_real(z, prec)?,
    );
    let err = ctx.alloc(z.len(), Elem::Real(prec))?;
    let d = ctx.prepare(
        &rrr_update::KERNEL,
        prec,
        &[
            (&params).into(),
            (&sc).into(),
            (&ab).into(),
            (&bb).into(),
            (&zb).into(),
            (&err).into(),
        ],
        z.len() as u64,
    )?;
    run_one(ctx, &d)?;
    Ok((zb.read_real()?, err.read_real()?))
}

/// Copies `src` (u32 words, a multiple of 4) with the copy kernel; returns the copy.
pub fn copy_words(ctx: &Arc<GpuContext>, src: &[u32]) -> Result<Vec<u32>> {
    assert!(src.len().is_multiple_of(4), "copy works in 16-byte words");
    let k = PreparedCopy::bind(ctx, ctx.upload_u32(src)?, src.len() / 4)?;
    k.run(1)?;
    k._bufs[2].read_u32()
}

/// A copy kernel bound once to two buffers of `bytes`, for bandwidth runs.
pub struct PreparedCopy {
    ctx: Arc<GpuContext>,
    dispatch: crate::gpu::Dispatch,
    /// Bytes copied per run.
    pub bytes: usize,
    _bufs: [GpuBuffer; 3],
}

impl PreparedCopy {
    /// Allocates source and destination and binds the kernel.
    pub fn new(ctx: &Arc<GpuContext>, bytes: usize) -> Result<Self> {
        let words = (bytes / 16).max(1);
        Self::bind(ctx, ctx.alloc(words * 4, Elem::U32)?, words)
    }

    /// Binds the kernel to copy `words` 16-byte words of `src` into a new buffer.
    fn bind(ctx: &Arc<GpuContext>, src: GpuBuffer, words: usize) -> Result<Self> {
        let params = ctx.uniform(&copy::Params {
            words: words as u32,
            pad: [0; 3],
        })?;
        let dst = ctx.alloc(words * 4, Elem::U32)?;
        let dispatch = ctx.prepare(
            &copy::KERNEL,
            Precision::F32,
            &[(&params).into(), (&src).into(), (&dst).into()],
            words as u64,
        )?;
        Ok(PreparedCopy {
            ctx: ctx.clone(),
            dispatch,
            bytes: words * 16,
            _bufs: [params, src, dst],
        })
    }

    /// Runs `reps` copies in one submit and waits.
    pub fn run(&self, reps: usize) -> Result<()> {
        let mut rec = self.ctx.recorder();
        for _ in 0..reps {
            rec.dispatch(&self.dispatch);
        }
        rec.submit()?;
        self.ctx.wait()
    }

    /// Seconds per copy and GB/s (read + write) over `reps` copies.
    pub fn bandwidth(&self, reps: usize) -> Result<(f64, f64)> {
        self.run(1)?;
        let t = Instant::now();
        self.run(reps)?;
        let per = t.elapsed().max(Duration::from_nanos(1)).as_secs_f64() / reps.max(1) as f64;
        Ok((per, 2.0 * self.bytes as f64 / per / 1e9))
    }
}

/// Items per chunk of a conv-unpool operator: at most `limit`, and few
/// enough that `width` values per item fit one binding.
fn conv_chunk(ctx: &GpuContext, prec: Precision, width: usize, n: usize, limit: usize) -> usize {
    let fit = (ctx.max_binding_bytes() / prec.bytes() as u64 / width.max(1) as u64).max(1);
    (fit as usize).min(limit).clamp(1, n.max(1))
}

/// Runs a per-item conv-unpool operator (forward or transpose) over chunks
/// of items: `src0` rows of `d_src`, results rows of `d_dst`, one
/// invocation per result value.
#[allow(clippy::too_many_arguments)]
fn conv_rows(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    sh: &conv_unpool::ConvShape,
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
    let chunk = conv_chunk(ctx, prec, d_src.max(d_dst), n, limit);
    let (code, alpha) = act.code();
    let scal = ctx.upload_real(&[alpha], prec)?;
    let kb = ctx.upload_real(kernels, prec)?;
    let bb = ctx.upload_real(bias, prec)?;
    let sb = ctx.alloc(chunk * d_src, Elem::Real(prec))?;
    let ob = ctx.alloc(chunk * d_dst, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * d_dst);
    for i0 in (0..n).step_by(chunk) {
        let items = chunk.min(n - i0);
        sb.write_real_at(0, &src[i0 * d_src..(i0 + items) * d_src]);
        let params = ctx.uniform(&conv_unpool::Params::new(sh, items, code))?;
        let disp = ctx.prepare(
            kernel,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&sb).into(),
                (&kb).into(),
                (&bb).into(),
                (&ob).into(),
            ],
            (items * d_dst) as u64,
        )?;
        run_one(ctx, &disp)?;
        out.extend(ob.read_real_range(0, items * d_dst)?);
    }
    Ok(out)
}

/// A conv-unpool layer's act(W h + c) (see [`conv_unpool`]), in chunks of
/// at most `limit` items that fit one binding.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &conv_unpool::ConvShape,
    kernels: &[f64],
    bias: &[f64],
    h: &[f64],
    act: dense::Act,
    limit: usize,
) -> Result<Vec<f64>> {
    let dims = (sh.d_in(), sh.d_out());
    conv_rows(
        ctx,
        prec,
        &conv_unpool::FORWARD,
        sh,
        kernels,
        bias,
        h,
        dims,
        act,
        limit,
    )
}

/// A conv-unpool layer's Wᵀ z, in chunks of at most `limit` items.
pub fn conv_transpose(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &conv_unpool::ConvShape,
    kernels: &[f64],
    z: &[f64],
    limit: usize,
) -> Result<Vec<f64>> {
    let bias = vec![0.0; sh.conv_channels()];
    let dims = (sh.d_out(), sh.d_in());
    conv_rows(
        ctx,
        prec,
        &conv_unpool::TRANSPOSE,
        sh,
        kernels,
        &bias,
        z,
        dims,
        dense::Act::Identity,
        limit,
    )
}

/// A conv-unpool layer's per-kernel normal equations over chunks of at
/// most `limit` items; each chunk's partial sums are read back and added
/// in f64 on the host in chunk order (the allreduce seam).
pub fn conv_normal_eq(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    sh: &conv_unpool::ConvShape,
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
    let chunk = conv_chunk(ctx, prec, d_in.max(d_out), n, limit);
    let hb = ctx.alloc(chunk * d_in, Elem::Real(prec))?;
    let zb = ctx.alloc((chunk * d_out).max(1), Elem::Real(prec))?;
    let scal = ctx.upload_real(&[1.0], prec)?;
    let cb = ctx.alloc((pl + 1) * cols, Elem::Real(prec))?;
    let groups = (pl + 1).div_ceil(conv_unpool::GPU_TILE) * cols.div_ceil(conv_unpool::GPU_TILE);
    for i0 in (0..n).step_by(chunk) {
        let items = chunk.min(n - i0);
        hb.write_real_at(0, &h[i0 * d_in..(i0 + items) * d_in]);
        zb.write_real_at(0, &zhat[i0 * d_out..(i0 + items) * d_out]);
        let params = ctx.uniform(&conv_unpool::Params::new(sh, items, 0))?;
        let disp = ctx.prepare(
            &conv_unpool::NORMAL_EQ,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&hb).into(),
                (&zb).into(),
                (&scal).into(),
                (&cb).into(),
            ],
            (groups * conv_unpool::NORMAL_EQ.workgroup as usize) as u64,
        )?;
        run_one(ctx, &disp)?;
        let part = cb.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    Ok(total)
}
