//! Data sets: loaders of the reference formats, CSV and IDX, generators
//! (majority gates, letters, spirals), and the PCA baseline.

pub mod folds;
pub mod images;
pub mod labeled;
pub mod letters;
pub mod majority;
pub mod matrix;
pub mod pca;
pub mod spiral;
