//! Figures: every chart has axes with tick values, axis labels, a legend
//! and a title, in PNG and SVG; image grids keep their pixels under a
//! caption. Text comes from the embedded font, so none of this needs a
//! font installed on the machine.

use crate::support::{output_text, run_cli, temp_dir};
use gradfree::plot::{
    Axis, Figure, Format, Histograms, ImageGrid, LineChart, Panel, Pixels, Series, rows_grid,
};

/// Every text element of an SVG (which must be well-formed XML).
fn svg_texts(svg: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(svg).expect("UTF-8 SVG");
    let doc = roxmltree::Document::parse(text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

/// Decodes a PNG and checks its size; returns it as greyscale.
fn decoded(png: &[u8], size: (u32, u32)) -> image::GrayImage {
    let img =
        image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a decodable PNG");
    assert_eq!((img.width(), img.height()), size);
    img.to_luma8()
}

/// Dark pixels (text, axes, lines) in rows `y0..y1`.
fn ink(img: &image::GrayImage, y0: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
        .count()
}

fn chart(series: Vec<Series>, log_x: bool) -> LineChart {
    LineChart {
        title: "test error against cumulative GWMs".into(),
        subtitle: "cpu, f32".into(),
        x: Axis {
            label: "cumulative GWMs".into(),
            log: log_x,
        },
        y: Axis {
            label: "test error".into(),
            log: false,
        },
        series,
    }
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        points,
    }
}

/// Both formats of `c`: the PNG decoded (960 × 600, with the title drawn
/// in its top band) and the SVG's texts.
fn both(c: &LineChart) -> (image::GrayImage, Vec<String>) {
    let png = decoded(&c.render(Format::Png).unwrap(), (960, 600));
    assert!(ink(&png, 0, 40) > 200, "the title is drawn");
    let texts = svg_texts(&c.render(Format::Svg).unwrap());
    for want in ["test error against cumulative GWMs", "cpu, f32"] {
        assert!(texts.iter().any(|t| t == want), "no '{want}' in {texts:?}");
    }
    let y_label = if c.y.log {
        "test error (log scale)"
    } else {
        "test error"
    };
    assert!(
        texts.iter().any(|t| t == y_label),
        "no '{y_label}' in {texts:?}"
    );
    (png, texts)
}

#[test]
fn charts_of_one_two_and_many_series_name_every_series() {
    let one = chart(
        vec![series("RRR", vec![(0.1, 0.5), (1.0, 0.3), (10.0, 0.2)])],
        true,
    );
    let (_, texts) = both(&one);
    assert!(texts.contains(&"RRR".to_string()));
    assert!(
        texts
            .iter()
            .any(|t| t.contains("cumulative GWMs") && t.contains("log scale"))
    );

    let two = chart(
        vec![
            series("RRR", vec![(0.1, 0.5), (1.0, 0.3)]),
            series("SGD", vec![(0.05, 0.6), (2.0, 0.25)]),
        ],
        true,
    );
    let (_, texts) = both(&two);
    assert!(texts.contains(&"RRR".to_string()) && texts.contains(&"SGD".to_string()));

    // Twelve series: colours repeat, the legend still names each one that fits.
    let many: Vec<Series> = (0..12)
        .map(|k| {
            series(
                &format!("run {k}"),
                (1..20).map(|i| (i as f64, 1.0 / (i + k) as f64)).collect(),
            )
        })
        .collect();
    let (_, texts) = both(&chart(many, false));
    let named = texts.iter().filter(|t| t.starts_with("run ")).count();
    let more = texts.iter().any(|t| t.contains("more series"));
    assert!(named == 12 || (named >= 8 && more), "{texts:?}");
}

#[test]
fn empty_one_point_and_nan_series_are_drawn_and_said() {
    let c = chart(
        vec![
            series("empty", vec![]),
            series("lone", vec![(12.7, 0.117)]),
            series(
                "gaps",
                vec![(1.0, 0.4), (2.0, f64::NAN), (f64::NAN, 0.3), (4.0, 0.2)],
            ),
        ],
        true,
    );
    let (_, texts) = both(&c);
    assert!(texts.contains(&"no points".to_string()), "{texts:?}");
    assert!(texts.contains(&"2 NaN skipped".to_string()), "{texts:?}");
    assert!(texts.contains(&"lone".to_string()));

    // Nothing finite at all: still a chart, saying so.
    let c = chart(vec![series("void", vec![(f64::NAN, f64::NAN)])], true);
    let (_, texts) = both(&c);
    assert!(
        texts.contains(&"no finite points to plot".to_string()),
        "{texts:?}"
    );
    assert!(texts.contains(&"1 NaN skipped".to_string()), "{texts:?}");

    // Values ≤ 0 cannot sit on a log scale: left out and counted.
    let c = chart(vec![series("zero", vec![(0.0, 0.5), (1.0, 0.4)])], true);
    let (_, texts) = both(&c);
    assert!(
        texts.iter().any(|t| t.contains("1 ≤ 0 off the log scale")),
        "{texts:?}"
    );
}

#[test]
fn log_axes_are_labelled_in_decades_or_one_two_five() {
    // Nine decades: every decade labelled 10ᵏ.
    let c = chart(vec![series("wide", vec![(1e-3, 0.5), (1e6, 0.1)])], true);
    let (_, texts) = both(&c);
    for label in ["10⁻³", "10⁰", "10⁶"] {
        assert!(
            texts.contains(&label.to_string()),
            "no {label} in {texts:?}"
        );
    }
    // One decade: ticks at 1, 2 and 5 × 10ᵏ, written as numbers.
    let c = chart(vec![series("narrow", vec![(0.3, 0.5), (2.5, 0.1)])], true);
    let (_, texts) = both(&c);
    for label in ["0.2", "0.5", "1", "2", "5"] {
        assert!(
            texts.contains(&label.to_string()),
            "no {label} in {texts:?}"
        );
    }
    // A log y axis as well.
    let mut c = chart(vec![series("err", vec![(1.0, 1.0), (1e4, 1e-5)])], true);
    c.y.log = true;
    let (_, texts) = both(&c);
    assert!(texts.contains(&"10⁻⁵".to_string()), "{texts:?}");
}

#[test]
fn histograms_have_a_panel_per_list_with_axes() {
    let h = Histograms {
        title: "code values per code node".into(),
        x_label: "code value".into(),
        bins: 16,
        panels: (0..5)
            .map(|k| Panel {
                name: format!("code node {}", k + 1),
                values: (0..200)
                    .map(|i| ((i * (k + 3)) % 97) as f64 / 97.0)
                    .collect(),
            })
            .chain([Panel {
                name: "odd".into(),
                values: vec![1.0, f64::NAN, 1.0],
            }])
            .collect(),
    };
    // Six panels: four columns, two rows.
    let png = decoded(&h.render(Format::Png).unwrap(), (4 * 320, 48 + 2 * 250));
    assert!(ink(&png, 0, 40) > 200);
    let texts = svg_texts(&h.render(Format::Svg).unwrap());
    for want in [
        "code values per code node",
        "code node 1",
        "code node 5",
        "code value",
        "items",
    ] {
        assert!(texts.iter().any(|t| t == want), "no '{want}' in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t == "odd (1 non-finite left out)"),
        "{texts:?}"
    );
}

#[test]
fn image_grids_keep_their_pixels_under_a_caption() {
    // Two blocks of three 4×5 images, 16 to a row: each block on its own row.
    let a: Vec<f64> = (0..3 * 20).map(|i| (i % 20) as f64 / 19.0).collect();
    let b: Vec<f64> = vec![1.0; 3 * 20];
    let grid = rows_grid(
        "items and copies",
        &[("items", &a), ("copies", &b)],
        (4, 5),
        16,
        16,
    );
    assert_eq!(grid.caption[1], "row 1: items; row 2: copies; 16 per row.");
    let png = grid.png().unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    // The grid is 16 × 6 + 1 = 97 pixels wide, centred on a 480-pixel
    // caption, 2 × 5 + 1 = 11 pixels high under it.
    assert_eq!(img.width(), 480);
    let (left, top) = ((480 - 97) / 2, img.height() - 11);
    assert!(top >= 2 * 18, "two caption lines");
    assert!(ink(&img, 0, top) > 100, "the caption is drawn");
    for r in 0..4u32 {
        for c in 0..5u32 {
            let want = (a[(r * 5 + c) as usize] * 255.0).round() as u8;
            assert_eq!(img.get_pixel(left + 1 + c, top + 1 + r).0[0], want);
            assert_eq!(img.get_pixel(left + 1 + c, top + 6 + r).0[0], 255);
        }
    }
    // Empty cells after a block's last image stay the gap colour.
    assert_eq!(img.get_pixel(left + 1 + 3 * 6, top + 1).0[0], 64);

    // Per-image scaling, and a caption wrapped to the width.
    let dim = [0.0, 0.25, 0.5, 0.25];
    let grid = ImageGrid {
        cells: vec![Some(&dim[..])],
        shape: (2, 2),
        cols: 8,
        pixels: Pixels::PerImageMax,
        caption: vec!["word ".repeat(200)],
    };
    let img = image::load_from_memory(&grid.png().unwrap())
        .unwrap()
        .to_luma8();
    // One 2×2 image: a 4×4 grid, centred.
    let (left, top) = ((480 - 4) / 2, img.height() - 4);
    assert!(top > 10 * 18, "a long caption wraps onto many lines");
    assert_eq!(img.get_pixel(left + 1, top + 2).0[0], 255, "0.5 of 0.5");
    assert_eq!(img.get_pixel(left + 2, top + 1).0[0], 128, "0.25 of 0.5");
    // A cell of the wrong size is refused.
    let bad = ImageGrid {
        cells: vec![Some(&dim[..3])],
        ..grid
    };
    assert!(bad.png().is_err());
}

/// A metrics.jsonl in its own run directory, with a summary beside it.
fn run_dir(dir: &std::path::Path, name: &str, lines: &str, device: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("metrics.jsonl"), lines).unwrap();
    let summary = format!("{{\"device\": \"{device}\", \"precision\": \"f32\"}}");
    std::fs::write(d.join("summary.json"), summary).unwrap();
    d
}

#[test]
fn plot_writes_png_svg_and_csv_and_says_where() {
    let dir = temp_dir("plot");
    let a = run_dir(
        &dir,
        "a",
        "{\"gwms\":1.0,\"test_err\":0.5}\n{\"gwms\":1.0,\"test_err\":0.3}\n",
        "cpu",
    );
    let b = run_dir(
        &dir,
        "b",
        "{\"gwms\":0.5,\"test_err\":0.4}\n{\"stage\":\"other\"}\n{\"gwms\":2.0,\"test_err\":null}\n{\"gwms\":1.0,\"test_err\":0.2}\n",
        "gpu",
    );
    let plot = |out: &std::path::Path, extra: &[&str]| {
        let sa = format!("RRR={}", a.join("metrics.jsonl").display());
        let sb = format!("SGD={}", b.display());
        let mut args = vec!["plot", "--series", &sa, "--series", &sb, "--out"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        run_cli(&args)
    };
    // A stem: PNG, SVG and CSV, all named on the terminal.
    let o = plot(&dir.join("cmp"), &[]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    for ext in ["png", "svg", "csv"] {
        let p = dir.join(format!("cmp.{ext}"));
        assert!(p.is_file(), "{ext}");
        assert!(text.contains(&p.display().to_string()), "{text}");
    }
    decoded(&std::fs::read(dir.join("cmp.png")).unwrap(), (960, 600));
    let texts = svg_texts(&std::fs::read(dir.join("cmp.svg")).unwrap());
    // The runs differ in device: it goes into the legend; precision, shared, under the title.
    for want in [
        "test error against cumulative GWMs",
        "f32",
        "RRR (cpu)",
        "SGD (gpu)",
        "1 NaN skipped",
        "test error (fraction misclassified)",
    ] {
        assert!(texts.iter().any(|t| t == want), "no '{want}' in {texts:?}");
    }
    // Cumulative GWMs: 1, 2 for RRR; 0.5, 2.5, 3.5 for SGD (the line
    // without the fields skipped, the null kept as NaN).
    assert_eq!(
        std::fs::read_to_string(dir.join("cmp.csv")).unwrap(),
        "series,gwms,test_err\nRRR,1,0.5\nRRR,2,0.3\nSGD,0.5,0.4\nSGD,2.5,NaN\nSGD,3.5,0.2\n"
    );
    // A file name picks its format; the CSV keeps its own name.
    let o = plot(&dir.join("only.svg"), &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(dir.join("only.svg").is_file() && dir.join("only.csv").is_file());
    assert!(!dir.join("only.png").exists());
    let o = plot(&dir.join("data.csv"), &["--format", "png"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(decoded(&std::fs::read(dir.join("data.png")).unwrap(), (960, 600)).width() > 0);
    assert!(
        std::fs::read_to_string(dir.join("data.csv"))
            .unwrap()
            .starts_with("series,")
    );
    // Contradictions and missing files are bad input.
    let o = plot(&dir.join("x.svg"), &["--format", "png"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let o = run_cli(&["plot", "--series", "nofile", "--out", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let o = run_cli(&[
        "plot",
        "--series",
        "A=/no/such/dir/metrics.jsonl",
        "--out",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}
