//! Data loaders and generators.

pub mod folds;
pub mod images;
pub mod labeled;
pub mod letters;
pub mod majority;
pub mod matrix;
pub mod spiral;
