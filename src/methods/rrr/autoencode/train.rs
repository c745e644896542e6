//! Training the autoencoder on the loop: batches of |Kd| data items (the
//! shuffled data cut into ⌊n/|Kd|⌋ batches) plus |Kc| code items sampled
//! from the previous batch's encodings (iDE), or all 2ⁿ codes for binary
//! encoding.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{AeSettings, Autoencoder, binary_solved, code_lists, sample_codes};
use crate::engine::{Backend, RrrEngine};
use crate::error::{Error, Result};
use crate::methods::rrr::{BatchStart, Model, gwms, solve_batch};
use crate::problem::RrrState;
use crate::train::checkpoint::{Provenance, Totals, fingerprint};
use crate::train::{Batches, Control, EpochEnd, Method, Plan, epoch_order};

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// rms of D(E(d)) − d over the training data.
    pub data_err: f64,
    /// rms of E(D(c)) − c over the epoch's last code batch (all codes for
    /// binary encoding).
    pub code_err: f64,
    /// Mean RRR_err after each batch's first iteration.
    pub rrr_err_start: f64,
    /// Mean RRR_err after each batch's last iteration.
    pub rrr_err_end: f64,
    /// Mean iterations per batch.
    pub iterations: f64,
    /// GWMs of the epoch.
    pub gwms: f64,
    /// Wall seconds of the epoch.
    pub seconds: f64,
}

/// Where a batch's codes come from.
pub enum CodeSource<'a> {
    /// iDE: sampled from the previous batch's encodings.
    Empirical,
    /// A fixed set (binary encoding: all 2ⁿ codes), every batch.
    Fixed(&'a [f64]),
}

/// Where training stands after an epoch: what a resumed run needs to go
/// on exactly as an uninterrupted one would.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AeProgress {
    /// Epochs completed (0: a fresh start).
    pub epoch: usize,
    /// The next batch's code items (iDE samples, rows of width C; empty:
    /// drawn from the first batch's encodings).
    pub next_codes: Vec<f64>,
    /// Word position of the code sampler's random stream.
    pub sampler_pos: u128,
}

/// The autoencoder's training as a [`Method`] of the loop, from `model`
/// and a fresh start or a checkpoint's progress.
pub struct AeTraining<'a> {
    backend: &'a Backend,
    ae: &'a Autoencoder,
    data: &'a [f64],
    codes: CodeSource<'a>,
    s: &'a AeSettings,
    time_limit: Option<f64>,
    /// Binary encoding of this many bits: stop once solved, keep no checkpoints.
    binary: Option<usize>,
    /// 1-based run (metrics lines carry it).
    run: usize,
    /// Runs in all (a prefix on every epoch line when more than one).
    runs: usize,
    /// The model after the latest batch.
    pub model: Model,
    /// The latest batch's code items (rows of width C).
    pub batch_codes: Vec<f64>,
    /// Where training stands after the latest epoch (not for binary encoding).
    pub progress: Option<AeProgress>,
    /// The epoch in which a binary code was solved.
    pub solved: Option<usize>,
    engine: Option<Box<dyn RrrEngine>>,
    state: Option<RrrState>,
    rng: ChaCha8Rng,
    kd: usize,
    kc: usize,
    epoch: (f64, f64, usize, usize),
    /// What the checkpoints record of the run's data and precision.
    fingerprint: String,
}

impl<'a> AeTraining<'a> {
    /// Checks the settings, data and codes; the batch engine is built at
    /// the first batch (a finished checkpoint trains none).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: &'a Backend,
        ae: &'a Autoencoder,
        data: &'a [f64],
        codes: CodeSource<'a>,
        s: &'a AeSettings,
        model: Model,
        from: AeProgress,
    ) -> Result<Self> {
        s.check()?;
        let (d, c) = (ae.net.data, ae.net.code);
        if data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(Error::Input(format!(
                "the data are not rows of the net's {d} data nodes"
            )));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(
                "the data contain NaN or infinite values".into(),
            ));
        }
        let kd = s.batch.min(data.len() / d);
        let kc = match codes {
            CodeSource::Fixed(cs) => {
                if !cs.len().is_multiple_of(c) {
                    return Err(Error::Input(format!(
                        "codes are not rows of {c} code nodes"
                    )));
                }
                cs.len() / c
            }
            CodeSource::Empirical if s.codes == 0 => {
                return Err(Error::Input("a batch needs at least one code item".into()));
            }
            CodeSource::Empirical => s.codes,
        };
        // Batches of kd + kc items on this net must be countable (a damaged
        // checkpoint's count would overflow the sizes below).
        if kd
            .checked_add(kc)
            .and_then(|k| k.checked_mul(ae.net.nodes().max(1)))
            .is_none()
        {
            return Err(Error::Input(format!(
                "batches of {kd} data and {kc} code items are too large for this net"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0xc0de);
        rng.set_word_pos(from.sampler_pos);
        // The first batch's codes come from the first batch's encodings
        // under the initial model.
        if !from.next_codes.is_empty() && from.next_codes.len() != kc * c {
            return Err(Error::Input(format!(
                "the saved next codes are not {kc} rows of {c}"
            )));
        }
        Ok(AeTraining {
            backend,
            ae,
            data,
            codes,
            s,
            time_limit: None,
            binary: None,
            run: 1,
            runs: 1,
            model,
            batch_codes: from.next_codes,
            progress: None,
            solved: None,
            engine: None,
            state: None,
            rng,
            kd,
            kc,
            epoch: (0.0, 0.0, 0, 0),
            fingerprint: fingerprint(data, &[], d),
        })
    }

    /// Stops after the epoch during which `seconds` have passed.
    pub fn with_time_limit(mut self, seconds: Option<f64>) -> Self {
        self.time_limit = seconds;
        self
    }

    /// The binary-encoding task of `n` bits: stop once solved.
    pub fn binary(mut self, n: usize) -> Self {
        self.binary = Some(n);
        self
    }

    /// Run `run` of `runs` (1-based).
    pub fn run_of(mut self, run: usize, runs: usize) -> Self {
        (self.run, self.runs) = (run, runs);
        self
    }
}

impl Method for AeTraining<'_> {
    type Record = Epoch;

    fn plan(&self) -> Plan {
        Plan {
            items: self.data.len() / self.ae.net.data,
            batches: Batches::Whole(self.kd),
            epochs: self.s.epochs,
            time_limit: self.time_limit.filter(|_| self.binary.is_none()),
        }
    }

    fn order(&mut self, epoch: usize) -> Vec<usize> {
        self.epoch = (0.0, 0.0, 0, 0);
        epoch_order(self.data.len() / self.ae.net.data, self.s.seed, epoch)
    }

    fn batch(&mut self, epoch: usize, b: usize, idx: &[usize]) -> Result<()> {
        let (ae, s, d, c) = (self.ae, self.s, self.ae.net.data, self.ae.net.code);
        let p = &ae.problem;
        // This process's slices of the batch's data items and code items
        // (all of them in a world of one).
        let col = self.backend.collective();
        if self.kd < col.world() {
            return Err(Error::Input(format!(
                "a batch of {} items cannot be shared by {} processes",
                self.kd,
                col.world()
            )));
        }
        let (mine_d, mine_c) = (col.slice_of(self.kd), col.slice_of(self.kc));
        let local = mine_d.len() + mine_c.len();
        if self.engine.is_none() {
            self.engine = Some(self.backend.rrr_engine(p, local)?);
            self.state = Some(RrrState::zeros(p, local));
        }
        let items: Vec<&[f64]> = idx
            .iter()
            .map(|&k| &self.data[k * d..(k + 1) * d])
            .collect();
        self.batch_codes = match self.codes {
            CodeSource::Fixed(cs) => cs.to_vec(),
            CodeSource::Empirical if self.batch_codes.is_empty() => {
                let lists = code_lists(ae, &self.model, &items);
                sample_codes(&lists, self.kc, &mut self.rng)
            }
            CodeSource::Empirical => std::mem::take(&mut self.batch_codes),
        };
        let code_rows: Vec<&[f64]> = self.batch_codes.chunks(c).collect();
        let state = self.state.as_mut().expect("built with the engine");
        ae.fill_batch_state(&self.model, &items[mine_d], &code_rows[mine_c], state);
        let engine = self.engine.as_mut().expect("built above");
        let (rep, _) = solve_batch(
            engine.as_mut(),
            BatchStart::State(state),
            s.iters_per_batch,
            s.beta,
            s.tol,
            &mut self.model,
            0,
            (epoch, b),
            false,
        )?;
        self.epoch.0 += rep.errors.first().copied().unwrap_or(f64::NAN);
        self.epoch.1 += rep.errors.last().copied().unwrap_or(f64::NAN);
        self.epoch.2 += rep.iterations;
        self.epoch.3 += 1;
        if matches!(self.codes, CodeSource::Empirical) {
            // The next batch samples from this batch's encodings.
            let lists = code_lists(ae, &self.model, &items);
            self.batch_codes = sample_codes(&lists, self.kc, &mut self.rng);
        }
        Ok(())
    }

    fn end_epoch(&mut self, epoch: usize, seconds: f64) -> Result<EpochEnd<Epoch>> {
        let (e_start, e_end, iters, batches) = self.epoch;
        let nb = batches as f64;
        let work = gwms(iters as u64, self.kd + self.kc, self.ae.problem.edges());
        let record = Epoch {
            epoch,
            data_err: self.ae.data_err(&self.model, self.data),
            code_err: self.ae.code_err(&self.model, &self.batch_codes),
            rrr_err_start: e_start / nb,
            rrr_err_end: e_end / nb,
            iterations: iters as f64 / nb,
            gwms: work,
            seconds,
        };
        let mut control = Control::Continue;
        match self.binary {
            Some(n) => {
                if binary_solved(self.ae, &self.model, n) {
                    self.solved = Some(epoch);
                    control = Control::Stop;
                }
            }
            None => {
                self.progress = Some(AeProgress {
                    epoch,
                    next_codes: self.batch_codes.clone(),
                    sampler_pos: self.rng.get_word_pos(),
                });
            }
        }
        Ok(EpochEnd {
            record,
            gwms: work,
            control,
        })
    }

    fn checkpoint(&self, history: &[Epoch], totals: &Totals) -> Result<Option<Vec<u8>>> {
        let Some(progress) = &self.progress else {
            return Ok(None);
        };
        let checkpoint = super::AeModel {
            net: self.ae.net.clone(),
            settings: self.s.clone(),
            model: self.model.clone(),
            code_lists: vec![],
            generator: None,
            progress: progress.clone(),
            history: history.to_vec(),
            provenance: Provenance {
                totals: Some(*totals),
                fingerprint: Some(self.fingerprint.clone()),
                precision: Some(self.backend.precision()),
            },
        };
        checkpoint.to_bytes().map(Some)
    }

    fn metric(&self, record: &Epoch) -> serde_json::Value {
        let mut v = serde_json::to_value(record).expect("records serialize");
        v["run"] = serde_json::json!(self.run);
        v
    }

    fn line(&self, st: &Epoch) -> String {
        format!(
            "{}epoch {}: data_err {:.4}, code_err {:.4}, RRR_err {:.4} → {:.4}, {:.3} GWMs, {:.2} s",
            if self.runs > 1 {
                format!("run {}: ", self.run)
            } else {
                String::new()
            },
            st.epoch,
            st.data_err,
            st.code_err,
            st.rrr_err_start,
            st.rrr_err_end,
            st.gwms,
            st.seconds
        )
    }
}
