//! The data loaders: every command reads `.gz` and one-file `.zip` inputs;
//! archives with no file or several, and decompression bombs, are refused;
//! values that are NaN, infinite or too large for the working precision
//! exit 2 naming file:line and the value; and (property tests) no input,
//! arbitrary or a mutated valid file, makes a loader panic, hang, or return
//! (or allocate) more than its size justifies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use gradfree::Precision;
use gradfree::data::labeled::{self, Labeled};
use gradfree::data::matrix::{self, TableFormat};
use gradfree::data::{Limits, decode_input, folds, images, read_input};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Gzip of `b` at the given level.
fn gz_at(b: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::new(level));
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn gz(b: &[u8]) -> Vec<u8> {
    gz_at(b, 6)
}

/// A zip archive of the named members (deflated), and optionally a directory.
fn zip_of(members: &[(&str, &[u8])], dir: Option<&str>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let opt = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    if let Some(d) = dir {
        z.add_directory(d, opt).unwrap();
    }
    for (name, bytes) in members {
        z.start_file(*name, opt).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// 12 rows of 5 features in [0, 1] and a 0/1 label: every column is in
/// [0, 1], so the same file serves the classifier (label last), StarNet and
/// the autoencoder (every column a feature).
fn unit_csv() -> String {
    (0..12)
        .map(|i| {
            let mut row: Vec<String> = (0..5)
                .map(|j| format!("{}", ((i * 7 + j * 3) % 10) as f64 / 10.0))
                .collect();
            row.push(format!("{}", i % 2));
            row.join(",") + "\n"
        })
        .collect()
}

fn small() -> Limits {
    Limits {
        max_abs: 1e16,
        max_bytes: 1 << 20,
    }
}

#[test]
fn gz_and_one_file_zip_load_in_starnet_autoencode_and_classify() {
    let dir = temp_dir("loaders_wrapped");
    let csv = unit_csv();
    let plain = dir.join("d.csv");
    let gzp = dir.join("d.csv.gz");
    let zipp = dir.join("d.zip");
    std::fs::write(&plain, &csv).unwrap();
    std::fs::write(&gzp, gz(csv.as_bytes())).unwrap();
    // A directory entry beside the one file is not a second member.
    std::fs::write(
        &zipp,
        zip_of(&[("data/d.csv", csv.as_bytes())], Some("data/")),
    )
    .unwrap();
    // The library reads all three to the same bytes.
    let want = read_input(&plain, &small()).unwrap();
    assert_eq!(want, csv.as_bytes());
    for p in [&gzp, &zipp] {
        assert_eq!(read_input(p, &small()).unwrap(), want, "{}", p.display());
    }
    for p in [&gzp, &zipp] {
        let d = s(p);
        let runs: [Vec<&str>; 3] = [
            vec![
                "starnet", "train", "--data", d, "--layers", "3", "--epochs", "1", "--device",
                "cpu", "--quiet",
            ],
            vec![
                "rrr",
                "autoencode",
                "--data",
                d,
                "--code",
                "2",
                "--epochs",
                "1",
                "--batch",
                "6",
                "--codes",
                "4",
                "--iters-per-batch",
                "5",
                "--device",
                "cpu",
                "--quiet",
            ],
            vec![
                "rrr",
                "classify",
                "--train",
                d,
                "--layers",
                "5,4,2",
                "--batch",
                "6",
                "--epochs",
                "1",
                "--iters-per-batch",
                "5",
                "--device",
                "cpu",
                "--quiet",
            ],
        ];
        for args in runs {
            let o = run_cli(&args);
            assert!(o.status.success(), "{args:?}: {}", output_text(&o));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zips_without_exactly_one_file_and_invalid_zips_exit_2() {
    let dir = temp_dir("loaders_zips");
    let csv = unit_csv();
    let two = dir.join("two.zip");
    std::fs::write(
        &two,
        zip_of(
            &[("a.csv", csv.as_bytes()), ("b.csv", csv.as_bytes())],
            None,
        ),
    )
    .unwrap();
    let empty = dir.join("empty.zip");
    std::fs::write(&empty, zip_of(&[], None)).unwrap();
    let only_dir = dir.join("dir.zip");
    std::fs::write(&only_dir, zip_of(&[], Some("d/"))).unwrap();
    let junk = dir.join("junk.zip");
    std::fs::write(&junk, b"PK\x03\x04 this is no archive").unwrap();
    let plain_named_zip = dir.join("text.zip");
    std::fs::write(&plain_named_zip, &csv).unwrap();
    for (p, phrase) in [
        (
            &two,
            "the zip archive holds 2 files (a.csv, b.csv); it needs exactly one",
        ),
        (&empty, "the zip archive holds no file"),
        (&only_dir, "the zip archive holds no file"),
        (&junk, "not a valid zip archive"),
        (&plain_named_zip, "not a valid zip archive"),
    ] {
        for cmd in [
            vec!["rrr", "classify", "--layers", "5,2", "--train", s(p)],
            vec!["starnet", "train", "--data", s(p)],
        ] {
            let o = run_cli(&[&cmd[..], &["--device", "cpu", "--quiet"]].concat());
            let t = output_text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?}: {t}");
            assert!(t.contains(phrase), "{cmd:?}: want {phrase:?}: {t}");
            assert!(t.contains(s(p)), "names the archive: {t}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` gzip members, each of `member` zero bytes (one compressed member,
/// repeated: a gzip bomb built in milliseconds).
fn gzip_bomb(member: usize, n: usize) -> Vec<u8> {
    let one = gz_at(&vec![0u8; member], 9);
    one.repeat(n)
}

#[test]
fn gzip_and_zip_bombs_are_refused_without_allocating_them() {
    let dir = temp_dir("loaders_bomb");
    // 1 GiB of zeros in about 1 MiB of gzip; the limit is 64 MiB.
    let bomb = gzip_bomb(16 << 20, 64);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let limits = Limits {
        max_abs: 1e16,
        max_bytes: 64 << 20,
    };
    let path = dir.join("bomb.csv.gz");
    std::fs::write(&path, &bomb).unwrap();
    let start = Instant::now();
    let (r, peak) = peak_alloc(|| read_input(&path, &limits));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("decompresses to more than 67108864 bytes") && e.contains("64.0 MiB"),
        "{e}"
    );
    assert!(e.contains(s(&path)), "{e}");
    // The compressed file and the decoder's state, not the content.
    assert!(
        peak < bomb.len() + (4 << 20),
        "read_input held {peak} bytes at its peak"
    );
    eprintln!(
        "gzip bomb refused in {:?}, peak {peak} bytes",
        start.elapsed()
    );
    // Within the limit it loads, into one buffer of its size.
    let ok = gzip_bomb(1 << 20, 3);
    let (r, peak) = peak_alloc(|| decode_input(ok.clone(), Path::new("ok.gz"), &limits));
    assert_eq!(r.unwrap().len(), 3 << 20);
    assert!(peak < (3 << 20) + (1 << 20), "peak {peak}");
    // A zip member of 64 MiB of zeros against a 1 MiB limit.
    let zbomb = zip_of(&[("zeros.csv", &vec![0u8; 64 << 20])], None);
    assert!(zbomb.len() < 1 << 20, "{}", zbomb.len());
    let (r, peak) = peak_alloc(|| decode_input(zbomb.clone(), Path::new("z.zip"), &small()));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("z.zip decompresses to more than 1048576 bytes"),
        "{e}"
    );
    assert!(peak < 4 << 20, "peak {peak}");
    // A plain file over the limit is refused before it is read.
    let e = decode_input(
        vec![b'1'; 100],
        Path::new("p.csv"),
        &Limits {
            max_abs: 1.0,
            max_bytes: 99,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("p.csv is 100 bytes, over the limit of 99 bytes"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_value_too_large_for_f32_exits_2_naming_file_line_and_value() {
    let dir = temp_dir("loaders_big");
    let p = dir.join("big.csv");
    let mut csv = unit_csv();
    csv = csv.replacen("0.3", "1e20", 1);
    let line = csv.lines().position(|l| l.contains("1e20")).unwrap() + 1;
    std::fs::write(&p, &csv).unwrap();
    let o = run_cli_within(
        &[
            "starnet",
            "train",
            "--data",
            s(&p),
            "--layers",
            "3",
            "--epochs",
            "1",
            "--precision",
            "f32",
            "--device",
            "cpu",
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    let want = format!(
        "{}:{line}: value 1e20 is too large for the working precision (|x| ≤ 1e16)",
        p.display()
    );
    assert!(t.contains(&want), "want {want:?}: {t}");
    // 1e300 in an NMF table: too large for f64 as well.
    let nmf = dir.join("big.nmf");
    std::fs::write(&nmf, "2\n1 2\n3 1e300\n").unwrap();
    for prec in ["f32", "f64"] {
        let o = run_cli(&[
            "rrr",
            "nmf",
            "--data",
            s(&nmf),
            "--rank",
            "1",
            "--precision",
            prec,
            "--device",
            "cpu",
            "--quiet",
        ]);
        let t = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(
            t.contains(&format!("{}:3: value 1e300", nmf.display())),
            "{t}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_in_every_text_format_exits_2_with_its_line() {
    let dir = temp_dir("loaders_nan");
    let w = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let csv = w("x.csv", "# comment\na,b,label\n0.1,0.2,0\n\n0.3,NaN,1\n");
    let lwl = w("x.lwl", "2 2\n0.1 0.2 0\n0.3\n0.4 1\n0.5 nan 0\n");
    let nmf = w("x.nmf", "2\n1 2\n\n3 NaN\n");
    let feats = w("f.csv", "0.1,0.2\n0.3,0.4\nNaN,0.5\n");
    let good_feats = w("g.csv", "0.1,0.2\n0.3,0.4\n0.5,0.6\n");
    let labels = w("l.csv", "label\n1\n2\nnan\n");
    let good_labels = w("gl.csv", "1\n2\n1\n");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["rrr", "classify", "--layers", "2,2", "--train", &csv],
            format!("{csv}:5: value NaN is not a number"),
        ),
        (
            vec!["rrr", "classify", "--layers", "2,2", "--train", &lwl],
            format!("{lwl}:5: value nan is not a number"),
        ),
        (
            vec!["starnet", "train", "--data", &lwl],
            format!("{lwl}:5: value nan"),
        ),
        (
            vec!["rrr", "nmf", "--rank", "1", "--data", &nmf],
            format!("{nmf}:4: value NaN"),
        ),
        (
            vec!["hsic", "fit", "--data", &feats, "--labels", &good_labels],
            format!("{feats}:3: value NaN"),
        ),
        (
            vec!["hsic", "fit", "--data", &good_feats, "--labels", &labels],
            format!("{labels}:4: value nan"),
        ),
    ];
    for (args, want) in cases {
        let o = run_cli(&[&args[..], &["--device", "cpu", "--quiet"]].concat());
        let t = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(&want), "{args:?}: want {want:?}: {t}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idx_headers_that_claim_more_than_the_file_holds_are_refused() {
    let lim = small();
    let p = Path::new("i");
    // 2^32-1 images of 2^32-1 × 2^32-1: the product overflows.
    let mut img = vec![0, 0, 8, 3];
    for _ in 0..3 {
        img.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    img.extend([1, 2, 3]);
    let lab = [0, 0, 8, 1, 0, 0, 0, 1, 7];
    let e = labeled::parse_idx(&img, &lab, p, Path::new("l"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflow"), "{e}");
    // 1000 images of 28×28 claimed, 3 bytes there.
    let mut img = vec![0, 0, 8, 3];
    for d in [1000u32, 28, 28] {
        img.extend_from_slice(&d.to_be_bytes());
    }
    img.extend([1, 2, 3]);
    let (r, peak) = peak_alloc(|| images::parse_rows(img.clone(), p, None, &lim));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("IDX body has 3 bytes, header says 1000×28×28 = 784000"),
        "{e}"
    );
    assert!(peak < 4096, "peak {peak}");
    // Counts that disagree between images and labels.
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1];
    img.extend([1, 2]);
    let e = labeled::parse_idx(&img, &lab, p, Path::new("l"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 images but l has 1 labels"), "{e}");
}

// ---- property tests ----------------------------------------------------

/// Cases per property: each runs in microseconds (the file loaders' in
/// about a millisecond), so a few hundred cost well under a second.
const CASES: u32 = 256;

/// A bound on one case: parsing a few hundred bytes takes microseconds;
/// this is generous for a loaded CI machine and still catches a hang.
const PER_CASE: Duration = Duration::from_secs(2);

/// Runs `case` on every input of `strategy`, each within [`PER_CASE`], the
/// whole within a minute.
fn check<S>(name: &'static str, strategy: S, case: impl Fn(&S::Value) + Send + 'static)
where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    within(Duration::from_secs(60), move || {
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let start = Instant::now();
        runner
            .run(&strategy, |v| {
                let t = Instant::now();
                case(&v);
                prop_assert!(t.elapsed() < PER_CASE, "took {:?}", t.elapsed());
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {CASES} cases in {:?}", start.elapsed());
    })
}

/// Edits of a valid file: (where, byte, what) with what = replace, insert,
/// delete, or truncate there.
type Edits = Vec<(prop::sample::Index, u8, u8)>;

fn edits() -> impl Strategy<Value = Edits> {
    // Bytes that matter to the parsers, and any byte.
    let byte = prop_oneof![
        3 => prop::sample::select(b"0123456789.,-+eE \n\r\t#NaIinf\x00\xff".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec((any::<prop::sample::Index>(), byte, 0u8..4), 0..4)
}

fn mutate(mut b: Vec<u8>, edits: &Edits) -> Vec<u8> {
    for (at, byte, what) in edits {
        let i = at.index(b.len() + 1);
        match what {
            0 if i < b.len() => b[i] = *byte,
            1 => b.insert(i, *byte),
            2 if i < b.len() => {
                b.remove(i);
            }
            3 => b.truncate(i),
            _ => {}
        }
    }
    b
}

/// A small labeled data set; a value is now and then past the limit.
fn data_set() -> impl Strategy<Value = Labeled> {
    (1usize..4, 1usize..5, 1usize..4).prop_flat_map(|(dim, items, classes)| {
        (
            prop::collection::vec(
                prop_oneof![40 => -2.0..2.0f64, 1 => Just(1e17), 1 => Just(-1e300)],
                dim * items,
            ),
            prop::collection::vec(0..classes as u32, items),
        )
            .prop_map(move |(x, y)| Labeled { dim, classes, x, y })
    })
}

/// Arbitrary bytes, or a valid file from `valid` with edits.
fn inputs(
    valid: impl Strategy<Value = Vec<u8>> + Send + Sync + 'static,
) -> impl Strategy<Value = Vec<u8>> + Send + 'static {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..400),
        3 => (valid, edits()).prop_map(|(b, e)| mutate(b, &e)),
    ]
    .sboxed()
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The checks every parsed set of values passes.
fn values_ok(x: &[f64], input_len: usize, lim: &Limits) {
    assert!(
        x.len() <= input_len,
        "{} values from {input_len} bytes",
        x.len()
    );
    assert!(x.iter().all(|v| v.is_finite() && v.abs() <= lim.max_abs));
}

fn labeled_ok(l: &Labeled, input_len: usize, lim: &Limits) {
    values_ok(&l.x, input_len, lim);
    assert!(l.y.len() <= input_len);
    assert_eq!(l.x.len(), l.y.len() * l.dim);
    assert!(l.y.iter().all(|&c| (c as usize) < l.classes));
}

#[test]
fn prop_reference_format_never_panics_and_stays_within_its_input() {
    let valid = data_set().prop_map(|d| d.to_lwl().into_bytes());
    check("lwl", inputs(valid), |b| {
        let t = text_of(b);
        let lim = small();
        if let Ok(l) = labeled::parse_lwl(&t, Path::new("p"), &lim) {
            labeled_ok(&l, t.len(), &lim);
        }
    });
}

#[test]
fn prop_csv_never_panics_and_stays_within_its_input() {
    let valid = data_set().prop_map(|d| d.to_csv().into_bytes());
    check("csv", inputs(valid), |b| {
        let t = text_of(b);
        let lim = small();
        if let Ok(l) = labeled::parse_csv(&t, Path::new("p"), None, &lim) {
            labeled_ok(&l, t.len(), &lim);
        }
        if let Ok(m) = matrix::parse_table(&t, Path::new("p"), TableFormat::Csv, &lim) {
            values_ok(m.as_slice(), t.len(), &lim);
        }
    });
}

#[test]
fn prop_nmf_table_never_panics_and_stays_within_its_input() {
    let valid = data_set().prop_map(|d| {
        let rows: Vec<String> =
            d.x.chunks(d.dim)
                .map(|r| {
                    r.iter()
                        .map(|v| format!("{v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
        format!("{}\n{}\n", d.dim, rows.join("\n")).into_bytes()
    });
    check("nmf", inputs(valid), |b| {
        let t = text_of(b);
        let lim = small();
        for f in [TableFormat::Nmf, TableFormat::Auto] {
            if let Ok(m) = matrix::parse_table(&t, Path::new("p"), f, &lim) {
                values_ok(m.as_slice(), t.len(), &lim);
            }
        }
    });
}

#[test]
fn prop_fold_csvs_never_panic_and_stay_within_their_input() {
    let valid = data_set().prop_map(|d| {
        let f: String =
            d.x.chunks(d.dim)
                .map(|r| {
                    r.iter()
                        .map(|v| format!("{v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                        + "\n"
                })
                .collect();
        let l: String = d.y.iter().map(|c| format!("{}\n", 3 * c)).collect();
        format!("{f}\x01{l}").into_bytes()
    });
    check("folds", inputs(valid), |b| {
        // Features, then labels after the first 0x01 byte (all of it labels
        // too when there is none).
        let t = text_of(b);
        let (f, l) = t.split_once('\x01').unwrap_or((&t, &t));
        let lim = small();
        if let Ok(r) = folds::parse_pair(f, l, Path::new("f"), Path::new("l"), &lim) {
            values_ok(&r.x, f.len(), &lim);
            assert!(r.labels.len() <= l.len());
            assert_eq!(r.x.len(), r.labels.len() * r.dim);
        }
        if let Ok(v) = folds::parse_labels(l, Path::new("l"), &lim) {
            assert!(v.len() <= l.len());
        }
    });
}

/// Valid IDX images (n × h × w) and labels, as one buffer: the labels
/// after the images.
fn idx_pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (0usize..4, 1usize..4, 1usize..4).prop_flat_map(|(n, h, w)| {
        (
            prop::collection::vec(any::<u8>(), n * h * w),
            prop::collection::vec(0u8..10, n),
        )
            .prop_map(move |(px, lab)| {
                let mut img = vec![0, 0, 8, 3];
                for d in [n, h, w] {
                    img.extend_from_slice(&(d as u32).to_be_bytes());
                }
                img.extend(px);
                let mut l = vec![0, 0, 8, 1];
                l.extend_from_slice(&(n as u32).to_be_bytes());
                l.extend(lab);
                (img, l)
            })
    })
}

#[test]
fn prop_idx_never_panics_and_stays_within_its_input() {
    let s = prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 0..40)
        ),
        (idx_pair(), edits(), edits())
            .prop_map(|((i, l), ei, el)| (mutate(i, &ei), mutate(l, &el))),
        // Only the header's counts edited: the sizes it claims.
        (idx_pair(), any::<prop::sample::Index>(), any::<u32>()).prop_map(|((mut i, l), at, v)| {
            let k = 4 + 4 * at.index(3);
            i[k..k + 4].copy_from_slice(&v.to_be_bytes());
            (i, l)
        }),
    ];
    check("idx", s, |(img, lab)| {
        let lim = small();
        let (r, peak) = peak_alloc(|| labeled::parse_idx(img, lab, Path::new("i"), Path::new("l")));
        if let Ok(d) = r {
            labeled_ok(&d, img.len() + lab.len(), &lim);
            assert!(d.y.len() <= lab.len() && d.dim > 0);
        }
        assert!(peak <= 16 * (img.len() + lab.len()) + 4096, "peak {peak}");
        if let Ok(rows) = images::parse_rows(img.clone(), Path::new("i"), None, &lim) {
            values_ok(&rows.x, img.len(), &lim);
            assert_eq!(rows.x.len() % rows.dim, 0);
        }
    });
}

#[test]
fn prop_rows_of_any_format_never_panic_and_stay_within_their_input() {
    let valid = prop_oneof![
        data_set().prop_map(|d| d.to_csv().into_bytes()),
        data_set().prop_map(|d| d.to_lwl().into_bytes()),
        idx_pair().prop_map(|(i, _)| i),
    ];
    check("rows", inputs(valid), |b| {
        let lim = small();
        let (r, peak) = peak_alloc(|| images::parse_rows(b.clone(), Path::new("r"), None, &lim));
        if let Ok(rows) = r {
            values_ok(&rows.x, b.len(), &lim);
        }
        assert!(
            peak <= 64 * b.len() + 4096,
            "peak {peak} for {} bytes",
            b.len()
        );
    });
}

/// A gzip or zip wrapper of `b`, or `b` itself: (the name, the bytes).
fn wrapped(b: Vec<u8>, how: u8) -> (PathBuf, Vec<u8>) {
    match how % 3 {
        0 => ("w.gz".into(), gz(&b)),
        1 => ("w.zip".into(), zip_of(&[("w", &b)], None)),
        _ => ("w".into(), b),
    }
}

#[test]
fn prop_read_input_round_trips_and_survives_damaged_wrappers() {
    // Whole wrappers round-trip (zeros compress past the limit: refused).
    let content = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2000),
        (0usize..40_000).prop_map(|n| vec![0u8; n]),
    ];
    check("read_input round trip", (content, 0u8..3), |(b, how)| {
        let lim = Limits {
            max_abs: 1.0,
            max_bytes: 20_000,
        };
        let (name, raw) = wrapped(b.clone(), *how);
        if *how == 2 && (b.starts_with(&[0x1f, 0x8b]) || b.starts_with(b"PK")) {
            return; // plain bytes that look like an archive
        }
        match decode_input(raw, &name, &lim) {
            Ok(got) => assert_eq!(&got, b),
            Err(e) => {
                assert!(b.len() > 20_000, "{e}");
                let e = e.to_string();
                assert!(
                    e.contains("20000 bytes") && e.contains("over the limit"),
                    "{e}"
                );
            }
        }
    });
    // Damaged wrappers: an error or at most the limit, never a panic.
    let damaged = (
        prop::collection::vec(any::<u8>(), 0..600),
        0u8..3,
        edits(),
        0u8..3,
    );
    check("read_input damaged", damaged, |(b, how, e, name)| {
        let lim = Limits {
            max_abs: 1.0,
            max_bytes: 1000,
        };
        let (_, raw) = wrapped(b.clone(), *how);
        let raw = mutate(raw, e);
        // Any name: the extension decides as much as the magic bytes.
        let (name, _) = wrapped(vec![], *name);
        let n = raw.len();
        let (r, peak) = peak_alloc(|| decode_input(raw, &name, &lim));
        if let Ok(out) = r {
            assert!(out.len() as u64 <= lim.max_bytes);
        }
        assert!(peak <= 64 * n + (1 << 20), "peak {peak} for {n} bytes");
    });
}

#[test]
fn prop_file_loaders_never_panic_on_wrapped_damaged_files() {
    // The file loaders end to end (read_input, then the parser), through
    // files: every loader's public entry point.
    let dir = temp_dir("loaders_prop_files");
    let valid = prop_oneof![
        data_set().prop_map(|d| d.to_csv().into_bytes()),
        data_set().prop_map(|d| d.to_lwl().into_bytes()),
    ];
    let s = (inputs(valid), 0u8..3);
    let d = dir.clone();
    check("file loaders", s, move |(b, how)| {
        let lim = small();
        let (name, raw) = wrapped(b.clone(), *how);
        let p = d.join(name);
        std::fs::write(&p, &raw).unwrap();
        use gradfree::data::labeled::LabeledFormat as F;
        for f in [F::Auto, F::Lwl, F::Csv, F::Idx] {
            if let Ok(l) = labeled::load(&p, f, Some(&p), &lim) {
                labeled_ok(&l, b.len(), &lim);
            }
        }
        if let Ok(r) = images::load_rows(&p, None, &lim) {
            values_ok(&r.x, b.len(), &lim);
        }
        for f in [TableFormat::Auto, TableFormat::Csv, TableFormat::Nmf] {
            if let Ok(m) = matrix::load_table(&p, f, &lim) {
                values_ok(m.as_slice(), b.len(), &lim);
            }
        }
        if let Ok(t) = folds::load_pair(&p, &p, &lim) {
            values_ok(&t.x, b.len(), &lim);
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn limits_follow_the_precision_and_the_machine() {
    assert_eq!(Precision::F32.max_input(), 1e16);
    assert_eq!(Precision::F64.max_input(), 1e150);
    let l = Limits::for_precision(Precision::F32);
    assert_eq!(l.max_abs, 1e16);
    assert_eq!(Limits::for_precision(Precision::F64).max_abs, 1e150);
    // The available memory changes from call to call: only its presence is stable.
    match gradfree::data::available_memory() {
        Some(m) => assert!(m > 0 && l.max_bytes > 0),
        None => assert_eq!(l.max_bytes, gradfree::data::FALLBACK_MAX_BYTES),
    }
}
