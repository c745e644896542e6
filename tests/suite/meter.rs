//! The energy meter's RAPL reader on a fake powercap tree (this machine has
//! no sensor): package domains only, deltas in joules, wraparound handled.

use crate::support::temp_dir;
use gradfree::train::meter::Rapl;
use std::fs;
use std::path::Path;

fn domain(root: &Path, name: &str, energy: u64, range: u64) {
    let d = root.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("energy_uj"), format!("{energy}\n")).unwrap();
    fs::write(d.join("max_energy_range_uj"), format!("{range}\n")).unwrap();
    fs::write(d.join("name"), "package-0\n").unwrap();
}

#[test]
fn rapl_sums_package_domains_and_handles_wraparound() {
    let root = temp_dir("rapl-wrap");
    domain(&root, "intel-rapl:0", 1_000_000, 10_000_000);
    domain(&root, "intel-rapl:1", 9_500_000, 10_000_000);
    // A sub-zone (core) must not be double counted.
    domain(&root, "intel-rapl:0:0", 5, 10_000_000);
    let r = Rapl::open(&root).unwrap();
    assert_eq!(r.joules().unwrap(), 0.0);
    fs::write(root.join("intel-rapl:0/energy_uj"), "3500000").unwrap(); // +2.5 J
    fs::write(root.join("intel-rapl:1/energy_uj"), "500000").unwrap(); // wrapped: +1.0 J
    fs::write(root.join("intel-rapl:0:0/energy_uj"), "9000000").unwrap();
    let j = r.joules().unwrap();
    assert!((j - 3.5).abs() < 1e-12, "got {j} J");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn rapl_without_domains_says_why() {
    let root = temp_dir("rapl-empty");
    let e = Rapl::open(&root).unwrap_err();
    assert!(e.contains("no RAPL package domain"), "{e}");
    let e = Rapl::open(&root.join("missing")).unwrap_err();
    assert!(e.contains("no RAPL powercap"), "{e}");
    let _ = fs::remove_dir_all(&root);
}
