//! gradfree — training neural networks without gradients.
//!
//! Three published methods on one engine: RRR constraint satisfaction
//! ("Learning without loss", Elser), StarNet layer-wise least squares
//! (Zadeh et al.) and layer-wise HSIC networks with closed-form weights
//! (Wu et al.). Data flows one way: methods ([`rrr`]) → [`backend`]
//! (CPU or GPU) → [`kernels`] → [`gpu`] (the only module that calls wgpu).
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod data;
pub mod error;
pub mod gpu;
pub mod hsic;
pub mod kernels;
pub mod meter;
pub mod output;
pub mod real;
pub mod rrr;
pub mod sgd;
pub mod starnet;

pub use backend::{Backend, DeviceChoice};
pub use error::{Error, Result};
pub use real::{Precision, Real};
