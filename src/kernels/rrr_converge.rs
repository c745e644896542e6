//! The convergence check of RRR iterations on the device (see
//! `shaders/rrr_converge.wgsl`): after the iterations that end a check, the
//! history slots since the previous check mark each group whose RRR_err
//! fell below tol, and once every group has been below, the run stops —
//! `rrr_step` and the bias sums leave the state alone from then on. The host
//! can then queue iterations past a check without waiting for it, and its
//! result is the result of stopping there. [`reference`] is the f64 twin.
//! The check is two dispatches ([`GROUPS`], then [`KERNEL`]), so that no
//! invocation walks every group's slots: llvmpipe silently ends an
//! invocation's loops after 65,535 iterations (see
//! `gpu::SOFTWARE_LOOP_LIMIT`), about 500 groups of 64 iterations.
//! Twin of `shaders/rrr_converge.wgsl`.

use crate::gpu::{Bind, Kernel};

/// The verdict: one invocation, after [`GROUPS`].
pub const KERNEL: Kernel = Kernel {
    name: "rrr_converge",
    source: include_str!("../../shaders/rrr_converge.wgsl"),
    deps: &[],
    entry: "rrr_converge",
    binds: &[Bind::Uniform, Bind::Read, Bind::Read, Bind::ReadWrite],
    workgroup: 1,
    lanes: 1,
};

/// The scan: one invocation per group marks it if any of its slots since
/// the previous check is below the threshold.
pub const GROUPS: Kernel = Kernel {
    entry: "rrr_converge_groups",
    workgroup: 64,
    ..KERNEL
};

/// Words of the state before the per-group flags: bilinear roots found
/// degenerate, roots at the iteration cap, iterations scanned, stopped,
/// iterations at the stop.
pub const HEAD: usize = 5;
/// The state word that says the run has stopped.
pub const STOPPED: usize = 3;
/// The state word that holds the iterations at the stop.
pub const STOP_AT: usize = 4;

/// Uniform parameters (matches `ConvergeParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Error groups.
    pub groups: u32,
    /// Partial sums per group and slot.
    pub hist_parts: u32,
    /// Slots of the history ring.
    pub history: u32,
    /// Iterations between checks.
    pub check_every: u32,
    /// Iterations of the call: the last check is there.
    pub end: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// The f64 twin: one check over `hist` ([history][groups][hist_parts])
/// with threshold `tol2k` (tol² · K), updating `state` as the kernel does.
pub fn reference(p: &Params, tol2k: f64, hist: &[f64], state: &mut [u32]) {
    if state[STOPPED] != 0 {
        return;
    }
    let (groups, parts) = (p.groups as usize, p.hist_parts as usize);
    let first = state[2];
    let last = (first + p.check_every).min(p.end);
    let mut all = true;
    for g in 0..groups {
        for it in first..last {
            let base = (it % p.history) as usize * groups * parts + g * parts;
            let s: f64 = hist[base..base + parts].iter().sum();
            if s < tol2k {
                state[HEAD + g] = 1;
            }
        }
        all &= state[HEAD + g] != 0;
    }
    state[2] = last;
    if all {
        state[STOPPED] = 1;
        state[STOP_AT] = last;
    }
}

/// GPU launch of one check over `hist`, returning the updated `state`.
pub fn gpu(
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    prec: crate::real::Precision,
    p: &Params,
    tol2k: f64,
    hist: &[f64],
    state: &[u32],
) -> crate::error::Result<Vec<u32>> {
    let params = ctx.uniform(p)?;
    let sc = ctx.upload_real(&[tol2k], prec)?;
    let hb = ctx.upload_real(hist, prec)?;
    let sb = ctx.upload_u32(state)?;
    let binds = [(&params).into(), (&sc).into(), (&hb).into(), (&sb).into()];
    ctx.run_all(&dispatches(ctx, prec, &binds, p.groups as usize)?)?;
    sb.read_u32()
}

/// The check's two dispatches over `binds` (parameters, threshold,
/// history, state) for `groups` error groups.
pub fn dispatches(
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    prec: crate::real::Precision,
    binds: &[crate::gpu::BindRef<'_>],
    groups: usize,
) -> crate::error::Result<Vec<crate::gpu::Dispatch>> {
    Ok(vec![
        ctx.prepare(&GROUPS, prec, binds, groups as u64)?,
        ctx.prepare(&KERNEL, prec, binds, 1)?,
    ])
}
