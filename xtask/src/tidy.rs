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
    for package in metadata.members().filter(|p| p.is_provider()) {
        problems.extend(provider_layout(&package.dir, &package.name));
        problems.extend(unpinned_mocks(&package.dir.join("tests"), &package.name));
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

/// Every provider crate has the same rooms, so a reader who knows one knows all six:
/// `lib` (docs, re-exports), `config` (the TOML table and its checks), `provider` (the
/// builder and the `Provider` impl), `client` (every request the API takes), `wire` (every
/// inbound decode, with its fixture tests), `session` (the session task), and `webhook`
/// for providers that receive webhooks. A few crates have one more room for a part of their
/// protocol big enough to stand alone; anything else is a new room that needs a reason here.
const PROVIDER_ROOMS: [&str; 6] = ["lib.rs", "config.rs", "provider.rs", "client.rs", "wire.rs", "session.rs"];
const EXTRA_ROOMS: [(&str, &str); 4] = [
    ("webhook.rs", "push providers: verification, decoding and routing of deliveries"),
    ("auth.rs", "per-session or client-credentials tokens with refresh (MIAW, Genesys)"),
    ("jws.rs", "8x8's detached JWS webhook signatures and their key cache"),
    ("notifications.rs", "Genesys's notification channels over WebSocket"),
];

fn provider_layout(dir: &Path, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let src = dir.join("src");
    for room in PROVIDER_ROOMS {
        if !src.join(room).is_file() {
            problems.push(format!("{name}: src/{room} is missing (the shared provider file map)"));
        }
    }
    let Ok(entries) = fs::read_dir(&src) else { return problems };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !PROVIDER_ROOMS.contains(&file.as_str()) && !EXTRA_ROOMS.iter().any(|(room, _)| *room == file) {
            problems.push(format!(
                "{name}: src/{file} is not in the shared provider file map; fold it into a room or add it to \
                 EXTRA_ROOMS in xtask/src/tidy.rs with its reason"
            ));
        }
    }
    let provider = fs::read_to_string(src.join("provider.rs")).unwrap_or_default();
    if provider.contains("async fn webhook(") != src.join("webhook.rs").is_file() {
        problems.push(format!("{name}: a provider with `webhook` keeps its ingress in src/webhook.rs, and only then"));
    }
    for test in ["tests/contract/main.rs", "tests/hostile.rs"] {
        if !dir.join(test).is_file() {
            problems.push(format!("{name}: {test} is missing"));
        }
    }
    problems
}

/// A wiremock pin says what it stands for and how often it must be hit: every
/// `Mock::given(…)` chain in a provider's tests carries `.named(…)` and `.expect(…)` before
/// it is mounted, so a request sent too often, too rarely or never fails the test by name.
fn unpinned_mocks(tests: &Path, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for file in rust_files(tests) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("Mock::given(") {
            let chain = &rest[at..];
            let end = chain.find(".mount").unwrap_or(chain.len());
            let chain = &chain[..end];
            if !chain.contains(".named(") || !chain.contains(".expect(") {
                let line = text[..text.len() - rest.len() + at].matches('\n').count() + 1;
                let rel = file.strip_prefix(tests.parent().unwrap_or(tests)).unwrap_or(&file);
                problems.push(format!(
                    "{name}: {}:{line}: a mock without .named(…) and .expect(…) before .mount",
                    rel.display()
                ));
            }
            rest = &rest[at + "Mock::given(".len()..];
        }
    }
    problems
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
    use super::*;

    #[test]
    fn an_unpinned_mock_and_a_stray_room_are_found() {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::create_dir_all(dir.join("tests/contract")).unwrap();
        for room in PROVIDER_ROOMS {
            fs::write(dir.join("src").join(room), "").unwrap();
        }
        fs::write(dir.join("src/helpers.rs"), "").unwrap();
        fs::write(dir.join("tests/hostile.rs"), "").unwrap();
        fs::write(
            dir.join("tests/contract/main.rs"),
            "fn a() { Mock::given(method(\"GET\")).named(\"x\").expect(1).mount(&s); }\n\
             fn b() { Mock::given(method(\"POST\")).respond_with(ok()).mount(&s); }\n",
        )
        .unwrap();
        let layout = provider_layout(&dir, "provider-x");
        assert_eq!(layout.len(), 1, "{layout:?}");
        assert!(layout[0].contains("src/helpers.rs"));
        let mocks = unpinned_mocks(&dir.join("tests"), "provider-x");
        assert_eq!(mocks.len(), 1, "{mocks:?}");
        assert!(mocks[0].contains("contract/main.rs:2"), "{mocks:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_repository_is_tidy() {
        let problems = check(&crate::workspace_root()).unwrap();
        assert!(problems.is_empty(), "tidy problems:\n  {}", problems.join("\n  "));
    }
}
