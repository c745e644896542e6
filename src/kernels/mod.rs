//! Numeric kernels. Each `<name>.rs` pairs with `shaders/<name>.wgsl`: the
//! [`crate::gpu::Kernel`] description, a plain-loop CPU twin that the WGSL
//! is tested against in f64, and (for the hot ones) the fast CPU-backend
//! version generic over precision.
//!
//! Layout shared by the RRR kernels: edges sorted by destination (in-edge
//! CSR), edge arrays `[E][K]` and node arrays `[N][K]` with the item index k
//! fastest, so that GPU invocations over k read coalesced memory and CPU
//! loops over k vectorize. The WGSL kernels over such rows are written over
//! `itemv` (one item, or in a [`crate::gpu::Kernel::quad`] variant a vec4
//! of four neighbouring items) for rows of a multiple of 4 items.

pub mod class_select;
pub mod consensus_nodes;
pub mod conv_unpool;
pub mod copy;
pub mod dense;
pub mod gauss_kernel;
pub mod kernel_product;
pub mod laplacian;
pub mod leaky_relu;
pub mod normal_eq;
pub mod normalize_weights;
pub mod par;
pub mod project_activation;
pub mod project_bilinear;
pub mod reduce_rows;
pub mod row_norms;
pub mod row_residual;
pub mod rrr_converge;
pub mod rrr_forward;
pub mod rrr_fused;
pub mod rrr_load;
pub mod rrr_step;
pub mod rrr_update;
pub mod select_radix;

use crate::gpu::Kernel;

/// Every WGSL kernel, for validation and warm-up.
pub const ALL: &[Kernel] = &[
    project_bilinear::KERNEL,
    project_activation::KERNEL,
    class_select::KEYS,
    class_select::SELECT,
    select_radix::HIST,
    select_radix::PICK,
    select_radix::TIES,
    select_radix::BLOCKS,
    consensus_nodes::KERNEL,
    consensus_nodes::QUAD,
    consensus_nodes::PAIR,
    reduce_rows::KERNEL,
    reduce_rows::SERIAL,
    reduce_rows::QUAD,
    reduce_rows::PAIR,
    reduce_rows::SERIAL_QUAD,
    reduce_rows::SERIAL_PAIR,
    normalize_weights::KERNEL,
    normalize_weights::QUAD,
    normalize_weights::PAIR,
    normalize_weights::GROUPS,
    rrr_step::KERNEL,
    rrr_step::QUAD,
    rrr_step::PAIR,
    rrr_step::WIDE,
    rrr_step::WIDE_QUAD,
    rrr_step::WIDE_PAIR,
    rrr_converge::KERNEL,
    rrr_converge::GROUPS,
    rrr_forward::KERNEL,
    rrr_forward::QUAD,
    rrr_forward::PAIR,
    rrr_fused::KERNEL,
    rrr_fused::QUAD,
    rrr_fused::PAIR,
    rrr_fused::LANES8,
    rrr_fused::LANES8_QUAD,
    rrr_fused::LANES8_PAIR,
    rrr_load::KERNEL,
    rrr_load::QUAD,
    rrr_load::PAIR,
    rrr_update::KERNEL,
    copy::KERNEL,
    gauss_kernel::KERNEL,
    kernel_product::KERNEL,
    laplacian::KERNEL,
    dense::KERNEL,
    normal_eq::KERNEL,
    row_norms::KERNEL,
    row_residual::KERNEL,
    leaky_relu::KERNEL,
    conv_unpool::FORWARD,
    conv_unpool::TRANSPOSE,
    conv_unpool::NORMAL_EQ,
];
