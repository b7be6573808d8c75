//! Tidy checks: the crate layering, module docs, and the Python-to-Rust
//! table covering everything the facade exports.

use std::fs;
use std::path::{Path, PathBuf};

/// The crates of the workspace from the bottom up. A crate may depend only
/// on crates before it in this list.
const LAYERS: &[&str] = &[
    "multiproc-process",
    "multiproc-shm",
    "multiproc-sync",
    "multiproc-channel",
    "multiproc-manager",
    "multiproc-pool",
    "multiproc-mpi",
    "multiproc",
];

/// Crates any crate may name as a dev-dependency: the facade (doctests are
/// written from a user's point of view) and the test kit.
const DEV_ANYWHERE: &[&str] = &["multiproc", "multiproc-testkit"];

pub(crate) fn check(root: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    layering(root, &mut problems)?;
    module_docs(root, &mut problems)?;
    python_table(root, &mut problems)?;
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("{} tidy problem(s)", problems.len()))
    }
}

fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .map_err(|e| format!("crates/: {e}"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The `multiproc*` dependencies of a manifest, by section.
fn our_deps(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
            continue;
        }
        if !section.ends_with("dependencies") {
            continue;
        }
        let key = line.split(['=', '.', ' ']).next().unwrap_or("");
        if key.starts_with("multiproc") {
            out.push((section.clone(), key.to_owned()));
        }
    }
    out
}

fn layering(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    for dir in crate_dirs(root)? {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
        if !manifest.contains(&format!("name = \"{name}\"")) {
            problems.push(format!(
                "crates/{name}: the folder name is not the crate name"
            ));
        }
        let Some(me) = LAYERS.iter().position(|l| *l == name) else {
            continue; // the test kit sits outside the layers
        };
        for (section, dep) in our_deps(&manifest) {
            if section == "dev-dependencies" && DEV_ANYWHERE.contains(&dep.as_str()) {
                continue;
            }
            match LAYERS.iter().position(|l| *l == dep) {
                Some(d) if d < me => {}
                Some(_) => problems.push(format!(
                    "crates/{name}: upward dependency on {dep} in [{section}]"
                )),
                None if dep == "multiproc-testkit" => problems.push(format!(
                    "crates/{name}: the test kit may only be a dev-dependency"
                )),
                None => problems.push(format!("crates/{name}: unknown crate {dep}")),
            }
        }
    }
    Ok(())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn module_docs(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let mut files = Vec::new();
    for dir in crate_dirs(root)? {
        rust_files(&dir.join("src"), &mut files);
    }
    for f in files {
        let text = fs::read_to_string(&f).map_err(|e| e.to_string())?;
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if !first.starts_with("//!") {
            let rel = f.strip_prefix(root).unwrap_or(&f);
            problems.push(format!(
                "{}: a library file must open with //! docs",
                rel.display()
            ));
        }
    }
    Ok(())
}

/// The names the facade re-exports with `pub use`.
fn facade_exports(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("pub use ") {
        rest = &rest[i + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let stmt = &rest[..end];
        let list = match (stmt.find('{'), stmt.rfind('}')) {
            (Some(a), Some(b)) if a < b => &stmt[a + 1..b],
            _ => stmt.rsplit("::").next().unwrap_or(""),
        };
        for item in list.split(',') {
            let item = item.trim();
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() && name != "self" && name != "*" {
                names.push(name.to_owned());
            }
        }
        rest = &rest[end..];
    }
    names
}

fn python_table(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let facade = fs::read_to_string(root.join("crates/multiproc/src/lib.rs"))
        .map_err(|e| format!("facade: {e}"))?;
    let table = fs::read_to_string(root.join("docs/python-to-rust.md"))
        .map_err(|e| format!("docs/python-to-rust.md: {e}"))?;
    for name in facade_exports(&facade) {
        let mentioned = table.contains(&format!("`{name}")) || table.contains(&format!("::{name}"));
        if !mentioned {
            problems.push(format!("docs/python-to-rust.md: no row for `{name}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_dependencies_by_section() {
        let m = "[package]\nname = \"x\"\n[dependencies]\nmultiproc-process.workspace = true\nserde = \"1\"\n[dev-dependencies]\nmultiproc = { path = \"..\" }\n";
        assert_eq!(
            our_deps(m),
            vec![
                ("dependencies".to_owned(), "multiproc-process".to_owned()),
                ("dev-dependencies".to_owned(), "multiproc".to_owned()),
            ]
        );
    }

    #[test]
    fn reads_facade_exports() {
        let src = "#[doc(inline)]\npub use a::{Error, Process as P, b::Queue};\npub use c::Lock;\n";
        assert_eq!(facade_exports(src), ["Error", "P", "Queue", "Lock"]);
    }
}
