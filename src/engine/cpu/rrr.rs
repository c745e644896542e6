//! RRR iterations on the CPU backend, generic over precision.
//!
//! Every sum over items is a local partial sum handed to the collective:
//! the weight consensus Σ_k w (in [`WSUM_PARTS`] fixed parts per edge), the
//! bias consensus Σ_k (2b_A − b), the error sums per error group, and the
//! selection keys (gathered, so every process ranks the whole batch).

use std::sync::Arc;

use rayon::prelude::*;

use crate::engine::{Collective, Consensus, IterReport, RrrEngine, Share};
use crate::error::Result;
use crate::kernels::consensus_nodes::{self, NodeInputs, XSumRows};
use crate::kernels::par::FlushDenormals;
use crate::kernels::project_bilinear::WarmRoot;
use crate::kernels::rrr_step::{self, StepInputs, StepState, WSUM_PARTS, XSumLayout, XSums};
use crate::kernels::{class_select, normalize_weights, reduce_rows};
use crate::problem::{NodeStart, RrrProblem, RrrState};
use crate::real::Real;

pub(crate) struct CpuRrr<T> {
    p: RrrProblem,
    /// Items of this process (the row stride of every [rows][K] array).
    items: usize,
    /// This process's share of the batch.
    share: Share,
    collective: Arc<dyn Collective>,
    /// Kernel codes of the node kinds, their parameters, the step mode and
    /// the selection (mode, budget).
    kind: Vec<u32>,
    param: Vec<u32>,
    mode: u32,
    select: (u32, usize),
    metric: Vec<T>,
    x: Vec<T>,
    w: Vec<T>,
    y: Vec<T>,
    b: Vec<T>,
    data: Vec<T>,
    labels: Vec<u32>,
    eff: Vec<u32>,
    xa: Vec<T>,
    ya: Vec<T>,
    ba: Vec<T>,
    wa: Vec<T>,
    /// Σ_k w per edge: one part per edge (a separate pass), or
    /// [`WSUM_PARTS`] when the step summed w (see `wsum_fresh`).
    wsum: Vec<T>,
    /// `wsum` already holds Σ_k w in [`WSUM_PARTS`] parts per edge (the
    /// step sums it while updating w).
    wsum_fresh: bool,
    /// Every edge ends at a bilinear node, so the step's sums cover all of w.
    step_sums_w: bool,
    /// How the step sums x for the node consensus (when it updates every edge).
    xlayout: Option<XSumLayout>,
    /// The step's partial sums of x ([`XSumLayout::rows`] × K).
    xsums: Vec<T>,
    /// `xsums` holds the sums of the current x.
    xsum_fresh: bool,
    bsum: Vec<T>,
    node_err: Vec<f64>,
    group_sums: Vec<f64>,
    warm: Vec<WarmRoot<T>>,
}

fn conv<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

/// `conv` into an existing buffer, in parallel chunks: a batch's replicas
/// are hundreds of megabytes, reloaded every batch.
fn conv_into<T: Real>(dst: &mut Vec<T>, src: &[f64]) {
    const CHUNK: usize = 1 << 16;
    dst.resize(src.len(), T::ZERO);
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (a, &b) in d.iter_mut().zip(s) {
                *a = T::from_f64(b);
            }
        });
}

fn back<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

impl<T: Real> CpuRrr<T> {
    pub(crate) fn new(
        p: &RrrProblem,
        items: usize,
        collective: Arc<dyn Collective>,
    ) -> Result<Self> {
        p.check_groups()?;
        let share = collective.share_of(items)?;
        let (kind, param) = p.node_codes();
        let s = RrrState::zeros(p, items);
        let (e, n) = (p.edges(), p.nodes);
        let step_sums_w = p
            .bil
            .iter()
            .map(|&j| (p.in_ptr[j as usize + 1] - p.in_ptr[j as usize]) as usize)
            .sum::<usize>()
            == e;
        let xlayout = step_sums_w.then(|| XSumLayout::new(n, &p.bil, &p.in_ptr, &p.src));
        let xrows = xlayout.as_ref().map_or(0, |l| l.rows());
        Ok(CpuRrr {
            p: p.clone(),
            items,
            share,
            collective,
            kind,
            param,
            mode: p.mode.code(),
            select: p.selection.code(),
            metric: conv(&p.metric),
            x: conv(&s.x),
            w: conv(&s.w),
            y: conv(&s.y),
            b: conv(&s.b),
            data: conv(&s.data),
            eff: s.labels.clone(),
            labels: s.labels,
            xa: vec![T::ZERO; n * items],
            ya: vec![T::ZERO; n * items],
            ba: vec![T::ZERO; n * items],
            wa: vec![T::ZERO; e],
            wsum: vec![T::ZERO; e * WSUM_PARTS],
            wsum_fresh: false,
            step_sums_w,
            xlayout,
            xsums: vec![T::ZERO; xrows * items],
            xsum_fresh: false,
            bsum: vec![T::ZERO; n],
            node_err: vec![0.0; p.bil.len()],
            group_sums: vec![0.0; p.err_groups.max(1)],
            warm: vec![WarmRoot::NONE; p.bil.len() * items],
        })
    }

    /// PA(z): node consensus and weight consensus.
    fn project_a(&mut self) -> Result<()> {
        let (select_mode, budget) = self.select;
        if select_mode != class_select::MODE_NONE {
            let sel = class_select::SelectInputs {
                items: self.items,
                first_class: self.p.first_class,
                classes: self.p.classes,
                metric: &self.metric,
                margin: T::from_f64(self.p.class_margin),
                y: &self.y,
                b: &self.b,
                labels: &self.labels,
            };
            let (keys, best) = class_select::cpu_keys(&sel, select_mode);
            let all = self.collective.all_gather(&keys)?;
            class_select::cpu_select(
                &all,
                self.share.offset,
                &best,
                &self.labels,
                select_mode,
                budget,
                &mut self.eff,
            );
        }
        let inp = NodeInputs {
            items: self.items,
            out_ptr: &self.p.out_ptr,
            out_edges: &self.p.out_edges,
            kind: &self.kind,
            param: &self.param,
            labels: &self.eff,
            class_margin: T::from_f64(self.p.class_margin),
            act_margin: T::from_f64(self.p.act_margin),
            x: &self.x,
            y: &self.y,
            b: &self.b,
            data: &self.data,
            xsum: match &self.xlayout {
                Some(l) if self.xsum_fresh => Some(XSumRows {
                    node_ptr: &l.node_ptr,
                    node_rows: &l.node_rows,
                    sums: &self.xsums,
                }),
                _ => None,
            },
        };
        consensus_nodes::cpu(&inp, &mut self.xa, &mut self.ya, &mut self.ba);
        let e = self.p.edges();
        let mut parts = if self.wsum_fresh {
            WSUM_PARTS
        } else {
            reduce_rows::cpu_row_sums(&self.w, None, self.items, &mut self.wsum[..e]);
            1
        };
        if parts > 1 && self.collective.world() > 1 {
            // Several processes: add the parts here (in the order the
            // normalization would) and send one sum per edge, not eight.
            for i in 0..e {
                let s = self.wsum[i * parts..(i + 1) * parts]
                    .iter()
                    .copied()
                    .sum::<T>();
                self.wsum[i] = s;
            }
            parts = 1;
        }
        self.collective.allreduce_sum(&mut self.wsum[..e * parts])?;
        normalize_weights::run(
            &self.p.group_ptr,
            &self.p.group_edges,
            &self.wsum,
            parts,
            self.share.total,
            self.p.clamp_weights,
            T::from_f64(self.p.omega),
            &mut self.wa,
        );
        Ok(())
    }
}

impl<T: Real> RrrEngine for CpuRrr<T> {
    fn load(&mut self, s: &RrrState) -> Result<()> {
        if s.items != self.items {
            return Err(crate::error::Error::Input(format!(
                "engine built for {} items, state has {}",
                self.items, s.items
            )));
        }
        s.validate(&self.p)?;
        conv_into(&mut self.x, &s.x);
        conv_into(&mut self.w, &s.w);
        conv_into(&mut self.y, &s.y);
        conv_into(&mut self.b, &s.b);
        conv_into(&mut self.data, &s.data);
        self.labels.clone_from(&s.labels);
        self.eff.clone_from(&s.labels);
        self.warm.fill(WarmRoot::NONE);
        self.wsum_fresh = false;
        self.xsum_fresh = false;
        Ok(())
    }

    fn load_nodes(&mut self, start: &NodeStart) -> Result<()> {
        start.validate_shape(self.p.edges(), self.p.nodes)?;
        let state = start.replicas(&self.p);
        self.load(&state)
    }

    fn iterate(
        &mut self,
        iters: usize,
        beta: f64,
        tol: f64,
        _check_every: usize,
    ) -> Result<IterReport> {
        let _ftz = FlushDenormals::new();
        let mut rep = IterReport::default();
        let kk = self.items;
        for _ in 0..iters {
            self.project_a()?;
            let bias_mean = if self.p.has_bias {
                reduce_rows::cpu_row_sums(&self.b, Some(&self.ba), kk, &mut self.bsum);
                self.collective.allreduce_sum(&mut self.bsum)?;
                let inv = T::ONE / T::from_f64(self.share.total as f64);
                for v in self.bsum.iter_mut() {
                    *v *= inv;
                }
                Some(&self.bsum[..])
            } else {
                None
            };
            let inp = StepInputs {
                items: kk,
                mode: self.mode,
                beta: T::from_f64(beta),
                omega: T::from_f64(self.p.omega),
                bil: &self.p.bil,
                in_ptr: &self.p.in_ptr,
                src: &self.p.src,
                metric: &self.metric,
                xa: &self.xa,
                wa: &self.wa,
                ya: &self.ya,
                ba: &self.ba,
                bias_mean,
            };
            let mut st = StepState {
                x: &mut self.x,
                w: &mut self.w,
                y: &mut self.y,
                b: &mut self.b,
                warm: Some(&mut self.warm),
                wsum: self.step_sums_w.then_some(&mut self.wsum[..]),
                xsum: self.xlayout.as_ref().map(|layout| XSums {
                    layout,
                    sums: &mut self.xsums[..],
                }),
            };
            let (_, counts) = rrr_step::cpu(&inp, &mut st, &mut self.node_err);
            self.wsum_fresh = self.step_sums_w;
            self.xsum_fresh = self.xlayout.is_some();
            rep.iterations += 1;
            rep.degenerate += counts.degenerate;
            rep.not_converged += counts.not_converged;
            let per = self.node_err.len() / self.group_sums.len();
            for (g, s) in self.group_sums.iter_mut().enumerate() {
                *s = self.node_err[g * per..(g + 1) * per].iter().sum();
            }
            self.collective.allreduce_sum_f64(&mut self.group_sums)?;
            rep.push_group_sums(&self.group_sums, self.share.total);
            if tol > 0.0 && rep.below(tol) {
                rep.converged = true;
                break;
            }
        }
        Ok(rep)
    }

    fn state(&mut self) -> Result<RrrState> {
        Ok(RrrState {
            items: self.items,
            x: back(&self.x),
            w: back(&self.w),
            y: back(&self.y),
            b: back(&self.b),
            data: back(&self.data),
            labels: self.labels.clone(),
        })
    }

    fn bias_consensus(&mut self) -> Result<Vec<f64>> {
        Ok(back(&self.bsum))
    }

    fn labels_used(&mut self) -> Result<Vec<u32>> {
        Ok(self.eff.clone())
    }

    fn consensus(&mut self) -> Result<Consensus> {
        self.project_a()?;
        Ok(Consensus {
            x: back(&self.xa),
            w: back(&self.wa),
            y: back(&self.ya),
            b: back(&self.ba),
        })
    }
}
