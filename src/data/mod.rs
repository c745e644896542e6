//! Data loaders and generators.

pub mod letters;
pub mod matrix;
