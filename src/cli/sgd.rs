//! `gradfree sgd`: the SGD baseline.

use super::common::{CommonArgs, effective_batch, load_labeled, split_held_out, widths_list};
use anyhow::Result;
use clap::Args;
use gradfree::data::labeled::LabeledFormat;
use gradfree::methods::sgd::{self, SgdSettings};
use gradfree::train::memory;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct SgdArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Layered net, e.g. 784,20,10.
    #[arg(long)]
    pub(crate) layers: String,
    /// Training data (reference classifier format, CSV with the label last, or IDX).
    #[arg(long)]
    pub(crate) train: PathBuf,
    /// Test data.
    #[arg(long)]
    pub(crate) test: Option<PathBuf>,
    /// Hold out this fraction of the training data for testing (as `rrr classify`).
    #[arg(long)]
    pub(crate) split: Option<f64>,
    /// Items per step |K|.
    #[arg(long, default_value_t = 128)]
    pub(crate) batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 40)]
    pub(crate) epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) lr: f64,
}

pub(crate) fn sgd(a: &SgdArgs) -> Result<()> {
    let c = &a.common;
    let widths = widths_list(&a.layers, "--layers")?;
    let mut train = load_labeled(&a.train, LabeledFormat::Auto, None, c.precision)?;
    let mut test = a
        .test
        .as_ref()
        .map(|p| load_labeled(p, LabeledFormat::Auto, None, c.precision))
        .transpose()?;
    if let Some(f) = a.split {
        (train, test) = split_held_out(&train, test.is_some(), f, c.seed)?;
    }
    let need = memory::dense_net(&widths, a.batch.min(train.len()));
    c.budget().check(need, "sgd")?;
    let s = SgdSettings {
        batch: effective_batch(a.batch, train.len()),
        epochs: a.epochs,
        lr: a.lr,
        seed: c.seed,
    };
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let own = sgd::run(&backend, &mut session, &widths, &train, test.as_ref(), &s)?;
    session.finish(c.seed, own)?;
    Ok(())
}
