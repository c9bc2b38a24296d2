//! Repository conventions, checked by `cargo xtask tidy` and by this crate's tests.
//!
//! Each rule has its reason next to it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Metadata;

/// Checks every rule; returns one line per problem.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let metadata = Metadata::load(root)?;
    let mut problems = Vec::new();
    for package in metadata.members() {
        let manifest = fs::read_to_string(package.dir.join("Cargo.toml"))
            .map_err(|e| format!("cannot read {}: {e}", package.dir.display()))?;
        if package.publishable {
            // Crates release on their own: each needs its own docs, changelog and version.
            for file in ["README.md", "CHANGELOG.md"] {
                let path = package.dir.join(file);
                match fs::read_to_string(&path) {
                    Ok(text) if !text.trim().is_empty() => {}
                    _ => problems.push(format!("{}: {file} is missing or empty", package.name)),
                }
            }
            let own_version = manifest.lines().any(|l| l.starts_with("version = \""));
            if !own_version || manifest.lines().any(|l| l.trim_start().starts_with("version.workspace")) {
                problems.push(format!("{}: needs its own `version = \"…\"` in Cargo.toml", package.name));
            }
            // The README is the crate documentation on docs.rs, and every public item is documented.
            let lib = package.dir.join("src/lib.rs");
            if let Ok(lib) = fs::read_to_string(&lib) {
                if !lib.contains("include_str!(\"../README.md\")") {
                    problems.push(format!("{}: src/lib.rs must use README.md as crate docs", package.name));
                }
                if !lib.contains("#![warn(missing_docs)]") && !lib.contains("#![deny(missing_docs)]") {
                    problems.push(format!("{}: src/lib.rs must enable missing_docs", package.name));
                }
            }
        }
        for dep in &package.dependencies {
            if !metadata.is_member(&dep.name) {
                continue;
            }
            // Internal dependencies carry path + version so published crates resolve; the
            // test kit is never published and stays path-only.
            let is_testkit = dep.name == "handover-testkit";
            if dep.kind != "dev" && (!dep.path || dep.req == "*") && package.publishable {
                problems.push(format!("{}: dependency on {} needs both path and version", package.name, dep.name));
            }
            if is_testkit && dep.kind != "dev" && package.publishable {
                problems.push(format!("{}: handover-testkit may only be a dev-dependency", package.name));
            }
            if is_testkit && dep.req != "*" {
                problems.push(format!("{}: dev-dependency on handover-testkit must be path-only", package.name));
            }
            // Provider crates stay independent of each other.
            if package.is_provider() && dep.name.starts_with("provider-") {
                problems.push(format!("{}: provider crates must not depend on {}", package.name, dep.name));
            }
        }
        // The core contract has no runtime.
        if package.name == "handover-core" {
            for dep in &package.dependencies {
                if dep.kind == "normal" && ["tokio", "reqwest", "hyper"].contains(&dep.name.as_str()) {
                    problems.push(format!("handover-core: must not depend on {}", dep.name));
                }
            }
        }
    }
    // Tests never hide: no ignored tests anywhere.
    let ignore = concat!("#[", "ignore");
    for file in rust_files(root) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        if text.contains(ignore) {
            let rel = file.strip_prefix(root).unwrap_or(&file);
            problems.push(format!("{}: contains {ignore}]", rel.display()));
        }
    }
    for file in ["README.md", ".ci/run"] {
        if !root.join(file).exists() {
            problems.push(format!("{file} is missing"));
        }
    }
    let readme = fs::read_to_string(root.join("README.md")).unwrap_or_default();
    if !readme.contains("cargo xtask ci") {
        problems.push("README.md must show the test command `cargo xtask ci`".to_owned());
    }
    Ok(problems)
}

fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_is_tidy() {
        let problems = super::check(&crate::workspace_root()).unwrap();
        assert!(problems.is_empty(), "tidy problems:\n  {}", problems.join("\n  "));
    }
}
