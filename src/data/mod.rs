//! Data loaders and generators.

pub mod labeled;
pub mod letters;
pub mod majority;
pub mod matrix;
