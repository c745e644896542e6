//! The integration tests: one test binary (each binary links wgpu and naga,
//! so one is much cheaper to build than one per file). One module per area;
//! `support` holds everything they share: the backends to test, tolerances,
//! comparisons, seeded data, the CLI, temporary directories.
//!
//! All modules run in this one process on parallel threads: a test must not
//! change process-wide state (see `support`).

mod support;

mod autoencode;
mod bad_input;
mod bench;
mod classify;
mod cli;
mod cli_classify;
mod golden;
mod hsic;
mod layers;
mod loaders;
mod meter;
#[cfg(feature = "mpi")]
mod mpi;
mod nmf_online;
mod plots;
mod project_bilinear;
mod rrr_chunked;
mod rrr_engine;
mod rrr_kernels;
mod shaders_validate;
mod starnet;
mod v0_checkpoints;
