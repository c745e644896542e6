//! Class-constraint selection for eccentric exemptions (paper eq. 32) and
//! relabeling (eq. 33), run at the start of every A-projection.
//!
//! Per item k, with `v_i(L)` the violation of class node i's constraint when
//! the item's label is L (`max(0, Δ − (y−b))` for i = L, `max(0, y−b)`
//! otherwise) and the projection moving y and b by equal and opposite
//! amounts, the squared projection distance is
//!
//! ```text
//! d²(k, L) = Σ_i g_i v_i(L)² / 2
//! ```
//!
//! - exemptions: key = d²(k, c[k]); the `budget` items with the largest
//!   positive keys are exempted (their class y, b left unchanged);
//! - relabeling: key = d²(k, c[k]) − min_L d²(k, L); the `budget` items with
//!   the largest positive keys take the minimizing label;
//! - relabeling fakes: the same, with key 0 (never selected) for items whose
//!   given label is not 0.
//!
//! Item k is selected when its key is positive and fewer than `budget`
//! items rank above it (larger key, or equal key and smaller index) — so
//! with fewer than `budget` violators only they are selected, never an item
//! already on its constraint. [`reference`] ranks by counting; the CPU
//! backend sorts; the device finds the threshold in O(K) by radix select
//! ([`super::select_radix`]). `class_keys` runs per item chunk and writes
//! keys into a batch-wide array; `class_select` reads the threshold and
//! writes each chunk's effective labels. Twin of `shaders/class_select.wgsl`.

use std::sync::Arc;

use super::select_radix::RadixSelect;
use crate::error::Result;
use crate::gpu::{Bind, GpuContext, Kernel};
use crate::real::Precision;
use crate::real::Real;

/// No selection: effective labels are the given ones.
pub const MODE_NONE: u32 = 0;
/// Eccentric exemptions (eq. 32).
pub const MODE_EXEMPT: u32 = 1;
/// Relabeling (eq. 33).
pub const MODE_RELABEL: u32 = 2;
/// Relabeling restricted to items of class 0 (the generative model's fakes,
/// which may take the genuine label: the false-positive allowance).
pub const MODE_RELABEL_FAKES: u32 = 3;
/// Effective label of an exempted item: its class variables are left unchanged.
pub const LABEL_EXEMPT: u32 = u32::MAX;

const BINDS: &[Bind] = &[
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Read,
    Bind::Read,
    Bind::Read,
];

/// Per-item keys and best labels.
pub const KEYS: Kernel = Kernel {
    name: "class_select",
    source: include_str!("../../shaders/class_select.wgsl"),
    deps: &[include_str!("../../shaders/select_radix.wgsl")],
    entry: "class_keys",
    binds: BINDS,
    workgroup: 64,
    lanes: 1,
};

/// Effective labels from the threshold [`super::select_radix`] found.
pub const SELECT: Kernel = Kernel {
    entry: "class_select",
    ..KEYS
};

/// Uniform parameters (matches `SelectParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items in this chunk (row stride of y, b).
    pub items: u32,
    /// First item of this chunk in the batch.
    pub offset: u32,
    /// Items in the batch.
    pub items_total: u32,
    /// Node id of the first class node (class nodes are contiguous).
    pub first_class: u32,
    /// Number of class nodes.
    pub classes: u32,
    /// MODE_*.
    pub mode: u32,
    /// Items that may be selected per batch (EE).
    pub budget: u32,
    /// Padding.
    pub pad: u32,
}

/// Inputs: class rows of y and b, given labels.
#[derive(Clone, Copy, Debug)]
pub struct SelectInputs<'a, T> {
    /// Items K.
    pub items: usize,
    /// Node id of the first class node.
    pub first_class: usize,
    /// Number of class nodes.
    pub classes: usize,
    /// Metric weight per node.
    pub metric: &'a [T],
    /// Class margin Δ.
    pub margin: T,
    /// y [N][K].
    pub y: &'a [T],
    /// b [N][K].
    pub b: &'a [T],
    /// Given label per item.
    pub labels: &'a [u32],
}

/// d²(k, L) for every label L, reduced to (key, best label) for `mode`.
pub fn item_key<T: Real>(inp: &SelectInputs<'_, T>, k: usize, mode: u32) -> (T, u32) {
    let kk = inp.items;
    let half = T::from_f64(0.5);
    let dist = |label: usize| -> T {
        let mut d = T::ZERO;
        for c in 0..inp.classes {
            let i = inp.first_class + c;
            let z = inp.y[i * kk + k] - inp.b[i * kk + k];
            let v = if c == label {
                (inp.margin - z).max(T::ZERO)
            } else {
                z.max(T::ZERO)
            };
            d += inp.metric[i] * v * v * half;
        }
        d
    };
    let given = inp.labels[k] as usize;
    let dg = dist(given);
    if mode != MODE_RELABEL && mode != MODE_RELABEL_FAKES {
        return (dg, inp.labels[k]);
    }
    if mode == MODE_RELABEL_FAKES && given != 0 {
        return (T::ZERO, inp.labels[k]);
    }
    let (mut best, mut db) = (given, dg);
    for label in 0..inp.classes {
        let d = dist(label);
        if d < db {
            best = label;
            db = d;
        }
    }
    (dg - db, best as u32)
}

/// Plain-loop f64 twin: keys, then rank by counting.
pub fn reference(inp: &SelectInputs<'_, f64>, mode: u32, budget: usize, eff: &mut [u32]) {
    let kk = inp.items;
    let keys: Vec<(f64, u32)> = (0..kk).map(|k| item_key(inp, k, mode)).collect();
    for k in 0..kk {
        let above = (0..kk)
            .filter(|&o| keys[o].0 > keys[k].0 || (keys[o].0 == keys[k].0 && o < k))
            .count();
        let chosen = mode != MODE_NONE && keys[k].0 > 0.0 && above < budget;
        eff[k] = match (chosen, mode) {
            (true, MODE_EXEMPT) => LABEL_EXEMPT,
            (true, _) => keys[k].1,
            (false, _) => inp.labels[k],
        };
    }
}

/// CPU backend: keys, then a sort instead of counting (same selection).
pub fn cpu<T: Real>(inp: &SelectInputs<'_, T>, mode: u32, budget: usize, eff: &mut [u32]) {
    let (keys, best) = cpu_keys(inp, mode);
    cpu_select(&keys, 0, &best, inp.labels, mode, budget, eff);
}

/// Every item's key and best label (the first half of [`cpu`]): the keys
/// are what a data-parallel run gathers across processes.
pub fn cpu_keys<T: Real>(inp: &SelectInputs<'_, T>, mode: u32) -> (Vec<T>, Vec<u32>) {
    if mode == MODE_NONE {
        return (Vec::new(), Vec::new());
    }
    (0..inp.items).map(|k| item_key(inp, k, mode)).unzip()
}

/// The effective labels of the items `offset..offset + labels.len()` of a
/// batch whose keys (all of the batch's items, in batch order) are
/// `all_keys`: the `budget` items with the largest positive keys (ties by
/// smaller batch index, the counting rule's order) are exempted or take
/// their `best` label; the others keep theirs.
pub fn cpu_select<T: Real>(
    all_keys: &[T],
    offset: usize,
    best: &[u32],
    labels: &[u32],
    mode: u32,
    budget: usize,
    eff: &mut [u32],
) {
    let kk = labels.len();
    eff[..kk].copy_from_slice(labels);
    if mode == MODE_NONE || budget == 0 {
        return;
    }
    let mut keyed: Vec<(T, usize)> = all_keys
        .iter()
        .enumerate()
        .filter(|e| *e.1 > T::ZERO)
        .map(|(k, &key)| (key, k))
        .collect();
    keyed.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    for &(_, k) in keyed.iter().take(budget) {
        if let Some(local) = k.checked_sub(offset).filter(|&l| l < kk) {
            eff[local] = if mode == MODE_EXEMPT {
                LABEL_EXEMPT
            } else {
                best[local]
            };
        }
    }
}

/// The device's selection from given keys (batch order) and best labels,
/// the batch cut into chunks of `chunk` items as the RRR engine cuts it:
/// the effective labels.
#[allow(clippy::too_many_arguments)]
pub fn gpu_select(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    keys: &[f64],
    best: &[u32],
    labels: &[u32],
    mode: u32,
    budget: usize,
    chunk: usize,
) -> Result<Vec<u32>> {
    let total = keys.len();
    let kb = ctx.upload_real(keys, prec)?;
    let radix = RadixSelect::new(ctx, prec, &kb, total, budget)?;
    let unused = ctx.upload_real(&[0.0], prec)?;
    let mut out = Vec::with_capacity(total);
    let mut rec = ctx.recorder();
    rec.dispatches(&radix.dispatches.iter().collect::<Vec<_>>());
    rec.submit()?;
    for start in (0..total).step_by(chunk.max(1)) {
        let items = chunk.min(total - start);
        let params = ctx.uniform(&Params {
            items: items as u32,
            offset: start as u32,
            items_total: total as u32,
            first_class: 0,
            classes: 0,
            mode,
            budget: budget as u32,
            pad: 0,
        })?;
        let given = ctx.upload_u32(&labels[start..start + items])?;
        let eff = ctx.upload_u32(&best[start..start + items])?;
        let d = ctx.prepare(
            &SELECT,
            prec,
            &[
                (&params).into(),
                (&unused).into(),
                (&unused).into(),
                (&unused).into(),
                (&unused).into(),
                (&given).into(),
                (&kb).into(),
                (&eff).into(),
                (&radix.state).into(),
                (&radix.tie_rank).into(),
                (&radix.block_ties).into(),
            ],
            items as u64,
        )?;
        ctx.run_one(&d)?;
        out.extend(eff.read_u32()?);
    }
    Ok(out)
}
