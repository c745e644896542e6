//! No-GPU check: every WGSL kernel parses and validates with naga, in f32
//! and in f64 (with the FLOAT64 capability the f64 path needs).

use gradfree::Precision;
use gradfree::kernels::ALL;

fn validate(src: &str, caps: naga::valid::Capabilities) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| e.emit_to_string(src))?;
    Ok(())
}

#[test]
fn every_shader_validates_in_both_precisions() {
    assert!(!ALL.is_empty());
    for k in ALL {
        validate(
            &k.wgsl(Precision::F32),
            naga::valid::Capabilities::default(),
        )
        .unwrap_or_else(|e| panic!("{} (f32):\n{e}", k.name));
        validate(
            &k.wgsl(Precision::F64),
            naga::valid::Capabilities::default() | naga::valid::Capabilities::FLOAT64,
        )
        .unwrap_or_else(|e| panic!("{} (f64):\n{e}", k.name));
    }
}

#[test]
fn every_shader_file_is_a_kernel() {
    // shaders/ and src/kernels/ pair 1:1.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .map(|n| n.trim_end_matches(".wgsl").to_string())
        .collect();
    files.sort();
    let mut names: Vec<String> = ALL.iter().map(|k| k.name.to_string()).collect();
    names.sort();
    // A kernel file may hold several entry points.
    names.dedup();
    assert_eq!(files, names);
    for n in &names {
        let rs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/kernels")
            .join(format!("{n}.rs"));
        assert!(rs.exists(), "{} has no Rust twin", n);
    }
}
