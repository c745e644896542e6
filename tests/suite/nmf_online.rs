//! Online RRR NMF reduces recon_err on a small generated montage set, on
//! both backends; the first iterations of a batch agree across backends.

use crate::support::*;
use gradfree::Precision;
use gradfree::data::letters;
use gradfree::methods::rrr::nmf::{self, Nmf, OnlineSettings};
use rand::SeedableRng;

#[test]
fn online_nmf_reduces_recon_err_on_montages() {
    let (y, _) = letters::generate(80, 3);
    let n = Nmf::new(16, letters::SIDE * letters::SIDE, 2.0).unwrap();
    let s = OnlineSettings {
        batch: 40,
        epochs: 3,
        iters_per_batch: 4,
        beta: 1.0,
        seed: 9,
    };
    // recon_err of the initial random weights (same seed, same first draw).
    let w0 = n.random_weights(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
    let x0 = nmf::nnls_codes(&n, &w0, &y, 200).unwrap();
    let initial = nmf::recon_err(&y, &x0, &w0);
    for (name, be) in backends_of(&[Precision::F32], &[Precision::F32]) {
        let mut session = gradfree::train::Session::silent(&be).unwrap();
        let (w, stats) = nmf::train_online(&be, &mut session, &n, &y, &s).unwrap();
        assert_eq!(stats.len(), 3);
        let (first, last) = (stats[0].recon_err, stats[2].recon_err);
        assert!(
            first < initial,
            "{name}: epoch 1 {first} not below the start {initial}"
        );
        assert!(
            last < first,
            "{name}: recon_err {first} → {last} did not fall"
        );
        assert!(w.iter().all(|&v| v >= 0.0), "{name}: negative weights");
        for i in 0..16 {
            assert!(
                (w.row(i).norm() - 2.0).abs() < 1e-4,
                "{name}: feature {i} norm"
            );
        }
        assert!(stats.iter().all(|e| e.gwms > 0.0));
    }
}
