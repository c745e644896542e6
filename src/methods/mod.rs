//! The training methods. Each imports the layers below it (train, engine,
//! problem, kernels, data, io) and never another method.

pub mod hsic;
pub mod rrr;
pub mod sgd;
pub mod starnet;
