//! The layering the compiler cannot enforce: the core names no adapter or SDK, and adapters do
//! not import each other (shared process plumbing in `adapters::process` excepted).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn core_names_no_adapter_sdk_or_wire_type() {
    let forbidden = [
        "crate::adapters",
        "crate::runtime",
        "crate::cli",
        "serenity",
        "rust_socketio",
        "reqwest",
        "mesh_protocol",
        "git2",
        "opus",
        "axum",
    ];
    let mut violations = Vec::new();
    for file in rust_files(&src().join("core")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden {
                if code.contains(f) {
                    violations.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "core must not depend on these:\n{}",
        violations.join("\n")
    );
}

#[test]
fn adapters_do_not_import_each_other() {
    let adapters_dir = src().join("adapters");
    let names: Vec<String> = std::fs::read_dir(&adapters_dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.is_dir()
                .then(|| p.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    let mut violations = Vec::new();
    for own in &names {
        for file in rust_files(&adapters_dir.join(own)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for other in names.iter().filter(|n| *n != own) {
                    if code.contains(&format!("adapters::{other}")) {
                        violations.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "adapters must not import each other:\n{}",
        violations.join("\n")
    );
}
