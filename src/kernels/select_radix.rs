//! The `budget` largest positive keys of a batch in O(K) on the device:
//! the selection of eccentric exemptions and relabeling at large batches,
//! where ranking by counting (O(K²)) cannot run. Twin of
//! `shaders/select_radix.wgsl`.
//!
//! A positive key maps to three words that order as the keys do: the key
//! split into three f32 (the nearest f32, then the nearest to the exact
//! remainder, twice), each as its bits flipped into unsigned order. f32
//! keys need only the first word (4 digit passes), f64 keys all three (12).
//! The split is exact for f64 keys within f32's range down to about 1e-30;
//! keys beyond it map to equal words where they differ only in bits the
//! f32 parts cannot hold, and are then taken in index order. Each digit
//! pass histograms one 8-bit digit of the keys whose decided digits equal
//! the threshold's and picks the digit under which the number still to
//! select falls. The threshold key T and the number r of items equal to T
//! still to take come out; a block scan ranks the items equal to T by
//! index, and an item is selected when its key is above T, or equal to T
//! with fewer than r equal keys before it — the same items as ranking by
//! counting (larger key first, ties to the smaller index). With no more
//! positive keys than the budget every positive key is selected.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, GpuContext, Kernel};
use crate::real::Precision;

const SOURCE: &str = include_str!("../../shaders/select_radix.wgsl");
const BINDS: &[Bind] = &[
    Bind::Uniform,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
];

/// Histogram of one digit (a workgroup per 4096 keys).
pub const HIST: Kernel = Kernel {
    name: "select_radix",
    source: SOURCE,
    deps: &[],
    entry: "radix_hist",
    binds: BINDS,
    workgroup: 256,
    lanes: 1,
};

/// The digit of the threshold, one invocation.
pub const PICK: Kernel = Kernel {
    entry: "radix_pick",
    workgroup: 1,
    ..HIST
};

/// Ranks of the items equal to the threshold within 256-item blocks.
pub const TIES: Kernel = Kernel {
    entry: "radix_ties",
    ..HIST
};

/// Ties before each block, one workgroup.
pub const BLOCKS: Kernel = Kernel {
    entry: "radix_blocks",
    ..HIST
};

/// Keys per histogram workgroup (`HIST_ITEMS` in the shader).
const HIST_ITEMS: u64 = 4096;
/// Items per tie-scan block (`TIE_BLOCK` in the shader).
pub const TIE_BLOCK: usize = 256;

/// Uniform parameters of one pass (matches `RadixParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Keys in the batch.
    pub items_total: u32,
    /// Word of this pass's digit.
    pub word: u32,
    /// Bit offset of this pass's digit in its word.
    pub shift: u32,
    /// Items to select.
    pub budget: u32,
    /// Decided bits of word 0, 1 and 2.
    pub mask: [u32; 3],
    /// 1 on a selection's first pass.
    pub first: u32,
}

/// The (word, bit offset) of every digit pass, most significant first.
pub fn digits(precision: Precision) -> Vec<(u32, u32)> {
    let words = match precision {
        Precision::F32 => 1,
        Precision::F64 => 3,
    };
    (0..words)
        .flat_map(|w| [24, 16, 8, 0].map(|shift| (w, shift)))
        .collect()
}

/// A float's bits as a u32 that orders as the floats do.
pub fn ordered_bits(v: f32) -> u32 {
    let u = v.to_bits();
    if u & 0x8000_0000 != 0 {
        !u
    } else {
        u | 0x8000_0000
    }
}

/// Words of a positive key that order as the keys do (the shader's
/// `order_words`).
pub fn order_words(x: f64) -> [u32; 3] {
    let y0 = x as f32;
    let r0 = x - y0 as f64;
    let y1 = r0 as f32;
    let y2 = (r0 - y1 as f64) as f32;
    [ordered_bits(y0), ordered_bits(y1), ordered_bits(y2)]
}

/// The selection's buffers and dispatches over one batch-wide key array.
pub struct RadixSelect {
    /// Every pass in order: histogram and pick per digit, then the tie scans.
    pub dispatches: Vec<Dispatch>,
    /// `[status, remaining, threshold words]`.
    pub state: GpuBuffer,
    /// Per item: ties before it in its block.
    pub tie_rank: GpuBuffer,
    /// Per block: ties before it.
    pub block_ties: GpuBuffer,
    _keep: Vec<GpuBuffer>,
}

impl RadixSelect {
    /// Prepares the selection of `budget` of the `keys` (a real buffer of
    /// at least `total` elements).
    pub fn new(
        ctx: &Arc<GpuContext>,
        precision: Precision,
        keys: &GpuBuffer,
        total: usize,
        budget: usize,
    ) -> Result<Self> {
        let bins = ctx.alloc(256, Elem::U32)?;
        let state = ctx.alloc(8, Elem::U32)?;
        let tie_rank = ctx.alloc(total.max(1), Elem::U32)?;
        let blocks = total.div_ceil(TIE_BLOCK).max(1);
        let block_ties = ctx.alloc(blocks, Elem::U32)?;
        let mut keep = Vec::new();
        let mut dispatches = Vec::new();
        let mut mask = [0u32; 3];
        let digits = digits(precision);
        let hist_threads = (total as u64).div_ceil(HIST_ITEMS).max(1) * 256;
        let budget = budget.min(u32::MAX as usize) as u32;
        // Each digit: a histogram and a pick; then the tie ranks and block offsets.
        let mut passes: Vec<(Params, Vec<(&Kernel, u64)>)> = Vec::new();
        for (i, &(word, shift)) in digits.iter().enumerate() {
            let first = (i == 0) as u32;
            let params = Params {
                items_total: total as u32,
                word,
                shift,
                budget,
                mask,
                first,
            };
            passes.push((params, vec![(&HIST, hist_threads), (&PICK, 1)]));
            mask[word as usize] |= 0xff << shift;
        }
        let ties = Params {
            items_total: total as u32,
            word: 0,
            shift: 0,
            budget,
            mask,
            first: 0,
        };
        passes.push((
            ties,
            vec![(&TIES, (blocks * TIE_BLOCK) as u64), (&BLOCKS, 256)],
        ));
        for (params, kernels) in passes {
            let params = ctx.uniform(&params)?;
            let binds = [
                (&params).into(),
                keys.into(),
                (&bins).into(),
                (&state).into(),
                (&tie_rank).into(),
                (&block_ties).into(),
            ];
            for (kernel, threads) in kernels {
                dispatches.push(ctx.prepare(kernel, precision, &binds, threads)?);
            }
            keep.push(params);
        }
        keep.push(bins);
        Ok(RadixSelect {
            dispatches,
            state,
            tie_rank,
            block_ties,
            _keep: keep,
        })
    }
}
