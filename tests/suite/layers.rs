//! The library's imports point one way (docs/architecture.md): this test
//! reads every source file under `src/` and fails on an import of a layer
//! above the file's own, and on a method importing another method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules from the top layer down; modules on one line share a
/// layer. The binary's `cli` and `main.rs` sit above them all.
const LAYERS: &[&[&str]] = &[
    &["bench"],
    &["methods"],
    &["train"],
    &["engine"],
    &["problem"],
    &["kernels"],
    &["gpu"],
    &["data", "io", "plot"],
    &["random", "real", "error"],
];

/// The methods: peers that may not import each other.
const METHODS: &[&str] = &["rrr", "starnet", "hsic", "sgd"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module (and, under `methods/`, the method) of a source
/// file relative to `src/`.
fn owner(rel: &Path) -> (String, Option<String>) {
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let method =
        (parts[0] == "methods" && parts.len() > 1 && parts[1] != "mod").then(|| parts[1].clone());
    (parts[0].clone(), method)
}

/// Every `crate::a::b` path in the code (comments dropped), as (a, b),
/// including the members of `crate::{a, b::c}` groups.
fn crate_paths(text: &str) -> Vec<(String, Option<String>)> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = vec![];
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let group;
        if let Some(g) = rest.strip_prefix('{') {
            let end = g.find('}').unwrap_or(g.len());
            group = g[..end].split(',').map(str::trim).collect::<Vec<_>>();
        } else {
            group = vec![rest];
        }
        for item in group {
            let mut seg = item
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .filter(|s| !s.is_empty());
            if let Some(first) = seg.next() {
                out.push((first, seg.next()));
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers_and_methods_stay_apart() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    sources(&src, &mut files);
    let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let (module, method) = owner(rel);
        if module == "cli" || module == "main" || module == "lib" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            panic!(
                "{}: module {module} is in no layer (add it to LAYERS)",
                rel.display()
            );
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (target, sub) in crate_paths(&text) {
            checked += 1;
            let Some(layer) = layer_of(&target) else {
                continue; // a re-export of lib.rs or a macro path
            };
            let why = if layer < own {
                Some(format!("imports {target}, a layer above {module}"))
            } else if target == "methods"
                && method.is_some()
                && sub.as_ref().is_some_and(|m| METHODS.contains(&m.as_str()))
                && sub != method
            {
                Some(format!(
                    "method {} imports method {}",
                    method.as_deref().unwrap_or("?"),
                    sub.as_deref().unwrap_or("?")
                ))
            } else {
                None
            };
            if let Some(w) = why {
                bad.entry(rel.display().to_string()).or_default().push(w);
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: is the parser broken?"
    );
    assert!(bad.is_empty(), "imports against the layers: {bad:#?}");
}

#[test]
fn the_parser_sees_upward_and_cross_method_imports() {
    let paths = crate_paths(
        "use crate::{engine::Backend, methods::hsic};\n// crate::bench::x\nlet a = crate::train::run;",
    );
    assert_eq!(
        paths,
        vec![
            ("engine".into(), Some("Backend".into())),
            ("methods".into(), Some("hsic".into())),
            ("train".into(), Some("run".into())),
        ]
    );
    assert_eq!(
        owner(Path::new("methods/rrr/classify.rs")),
        ("methods".into(), Some("rrr".into()))
    );
    assert_eq!(owner(Path::new("methods/sgd.rs")).1.as_deref(), Some("sgd"));
    assert_eq!(owner(Path::new("methods/mod.rs")).1, None);
    assert!(layer_of("engine") > layer_of("methods"));
}
