//! What `cargo metadata` says about the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace members and their manifests.
#[derive(Debug)]
pub struct Metadata {
    /// Workspace members.
    pub packages: Vec<Package>,
}

/// One workspace member.
#[derive(Debug, Clone)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// Directory of its manifest.
    pub dir: PathBuf,
    /// Whether it may be published to crates.io.
    pub publishable: bool,
    /// Names of its integration test targets.
    pub test_targets: Vec<String>,
    /// Its features and what each enables.
    pub features: Vec<(String, Vec<String>)>,
    /// Its dependencies.
    pub dependencies: Vec<Dependency>,
}

/// One dependency edge.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// Dependency name.
    pub name: String,
    /// Version requirement (`*` when none was given).
    pub req: String,
    /// `normal`, `dev` or `build`.
    pub kind: String,
    /// Whether it is a path dependency.
    pub path: bool,
}

impl Package {
    /// Whether this is a provider crate (`provider-*`).
    pub fn is_provider(&self) -> bool {
        self.name.starts_with("provider-")
    }
}

impl Metadata {
    /// Runs `cargo metadata --no-deps` in `root`.
    pub fn load(root: &Path) -> Result<Self, String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .current_dir(root)
            .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
            .output()
            .map_err(|e| format!("could not run cargo metadata: {e}"))?;
        if !output.status.success() {
            return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let json: Value =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata is not JSON: {e}"))?;
        Ok(Self::parse(&json))
    }

    fn parse(json: &Value) -> Self {
        let packages = json["packages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
                Package {
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    version: p["version"].as_str().unwrap_or_default().to_owned(),
                    dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
                    // `publish: []` means "nowhere"; null means crates.io.
                    publishable: !p["publish"].as_array().is_some_and(Vec::is_empty),
                    test_targets: p["targets"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test")))
                        .filter_map(|t| t["name"].as_str().map(str::to_owned))
                        .collect(),
                    features: p["features"]
                        .as_object()
                        .map(|f| {
                            f.iter()
                                .map(|(k, v)| {
                                    let enables = v
                                        .as_array()
                                        .map(Vec::as_slice)
                                        .unwrap_or_default()
                                        .iter()
                                        .filter_map(|x| x.as_str().map(str::to_owned))
                                        .collect();
                                    (k.clone(), enables)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    dependencies: p["dependencies"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|d| Dependency {
                            name: d["name"].as_str().unwrap_or_default().to_owned(),
                            req: d["req"].as_str().unwrap_or("*").to_owned(),
                            kind: d["kind"].as_str().unwrap_or("normal").to_owned(),
                            path: d["path"].is_string(),
                        })
                        .collect(),
                }
            })
            .collect();
        Self { packages }
    }

    /// Every member.
    pub fn members(&self) -> impl Iterator<Item = &Package> {
        self.packages.iter()
    }

    /// The facade crate (`handover`), once it exists.
    pub fn facade(&self) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == "handover")
    }

    /// The facade's features that switch on exactly one provider crate.
    pub fn facade_provider_features(&self) -> Vec<String> {
        let Some(facade) = self.facade() else {
            return Vec::new();
        };
        facade
            .features
            .iter()
            .filter(|(_, enables)| {
                let providers = enables
                    .iter()
                    .filter(|e| {
                        let dep = e.trim_start_matches("dep:");
                        let dep = dep.split(['/', '?']).next().unwrap_or(dep);
                        dep.starts_with("provider-")
                    })
                    .count();
                providers == 1
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `name` is a workspace member.
    pub fn is_member(&self, name: &str) -> bool {
        self.packages.iter().any(|p| p.name == name)
    }
}
