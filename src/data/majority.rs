//! Majority-gate circuit data (paper section 5.5.1): `depth` layers of gates,
//! each gate the majority of `fanin` distinct random nodes of the layer below
//! read through random Nots; layers below the top have `width` gates, the top
//! one gate, whose value is the class. All 2^inputs Boolean vectors are
//! shuffled and split into two equal halves (train, test). Deterministic
//! from the seed.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::labeled::Labeled;
use crate::error::{Error, Result};

/// A generated circuit: per layer, per gate, its (input index, negated) reads.
#[derive(Clone, Debug)]
pub struct Circuit {
    /// Number of Boolean inputs.
    pub inputs: usize,
    /// Gates per layer, bottom to top.
    pub layers: Vec<Vec<Vec<(usize, bool)>>>,
}

impl Circuit {
    /// Draws a random circuit.
    pub fn random(
        inputs: usize,
        depth: usize,
        fanin: usize,
        width: usize,
        seed: u64,
    ) -> Result<Self> {
        if inputs == 0 || inputs > 24 {
            return Err(Error::Input(format!(
                "the number of inputs must be in 1..=24 (all 2^inputs vectors are generated), got {inputs}"
            )));
        }
        if depth == 0 || fanin == 0 || fanin.is_multiple_of(2) {
            return Err(Error::Input(format!(
                "need depth ≥ 1 and an odd fan-in, got depth {depth}, fan-in {fanin}"
            )));
        }
        if fanin > inputs.min(width) {
            return Err(Error::Input(format!(
                "fan-in {fanin} exceeds the layer width ({} inputs, {width} gates per layer)",
                inputs
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut below = inputs;
        let mut layers = vec![];
        for l in 0..depth {
            let gates = if l + 1 == depth { 1 } else { width };
            let layer = (0..gates)
                .map(|_| {
                    let mut idx: Vec<usize> = (0..below).collect();
                    idx.shuffle(&mut rng);
                    idx[..fanin]
                        .iter()
                        .map(|&i| (i, rng.random_bool(0.5)))
                        .collect()
                })
                .collect();
            layers.push(layer);
            below = gates;
        }
        Ok(Circuit { inputs, layers })
    }

    /// The top gate's value for one input vector.
    pub fn eval(&self, bits: &[bool]) -> bool {
        let mut vals = bits.to_vec();
        for layer in &self.layers {
            vals = layer
                .iter()
                .map(|gate| {
                    let ones = gate.iter().filter(|&&(i, not)| vals[i] != not).count();
                    2 * ones > gate.len()
                })
                .collect();
        }
        vals[0]
    }

    /// All 2^inputs vectors, shuffled and split in two equal halves.
    pub fn split(&self, seed: u64) -> (Labeled, Labeled) {
        let n = 1usize << self.inputs;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x6d61_6a6f_7269_7479));
        let make = |idx: &[usize]| {
            let mut d = Labeled {
                dim: self.inputs,
                classes: 2,
                ..Default::default()
            };
            for &v in idx {
                let bits: Vec<bool> = (0..self.inputs).map(|b| (v >> b) & 1 == 1).collect();
                d.x.extend(bits.iter().map(|&b| b as u8 as f64));
                d.y.push(self.eval(&bits) as u32);
            }
            d
        };
        (make(&order[..n / 2]), make(&order[n / 2..]))
    }
}
