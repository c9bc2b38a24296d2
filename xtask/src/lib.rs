//! The commands behind `cargo xtask`. Kept dependency-light: std and serde_json only.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod metadata;
mod postgres;
mod service;
pub mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use metadata::{Metadata, Package};

const HELP: &str = "\
cargo xtask <command>

commands:
  ci         everything CI runs: fmt, tidy, clippy, test, contract, features, service,
             chaos --quick, chaos --quick --fleet, docs
  fmt        cargo fmt --check
  clippy     clippy on all targets and features with -D warnings
  test       the test suite (nextest when installed, else cargo test) and doctests, with a
             PostgreSQL: DATABASE_URL, else one on 127.0.0.1:5432, else a throwaway cluster
             (initdb and pg_ctl on PATH), else an error saying how to get one
  service    handover serve --demo, the Python and Node example bots through it, the agent
             desk in headless Chromium through a whole handover (xtask/browser), and a
             schemathesis fuzz of its OpenAPI document (python3, node, chromedriver needed)
  openapi    writes handover-server/openapi.json from the handlers' types
  postgres   which PostgreSQL the tests use (--throwaway: start, check and remove a cluster)
  features   each crate checked alone; the facade with no features and each provider alone
  contract   every provider's contract suite (fails when a suite runs zero tests)
  tidy       repository conventions (also runs as a test of this crate)
  chaos      the fault matrix: every provider under every emulator fault (release build;
             --quick: fewer messages per cell, the debug build). --fleet: three `handover
             serve` processes on one store (SQLite, then a throwaway PostgreSQL it restarts)
             under SIGKILL, SIGSTOP, SIGTERM, webhooks to non-owners, a callback outage, SSE
             cuts, a database restart and stream drops during takeover
  bench      benchmarks against hand-written floors, emulators in a separate process
             (release build; --quick: smaller sizes, a smoke run); writes target/bench/report.json
  docs       rustdoc with -D warnings
  help       this text
";

/// Runs `cargo xtask` with `args`.
pub fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map(String::as_str).unwrap_or("help");
    let root = workspace_root();
    match command {
        "ci" => ci(&root),
        "fmt" => fmt(&root),
        "clippy" => clippy(&root),
        "test" => test(&root),
        "features" => features(&root),
        "contract" => contract(&root),
        "service" => service::run(&root),
        "openapi" => openapi(&root),
        "postgres" => postgres::command(&root, &args[1..]),
        "tidy" => tidy_cmd(&root),
        "docs" => docs(&root),
        "chaos" => chaos(&root, &args[1..]),
        "bench" => bench(&root, &args[1..]),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    }
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn ci(root: &Path) -> Result<(), String> {
    type Step = fn(&Path) -> Result<(), String>;
    let steps: [(&str, Step); 10] = [
        ("fmt", fmt),
        ("tidy", tidy_cmd),
        ("clippy", clippy),
        ("test", test),
        ("contract", contract),
        ("features", features),
        ("service", service::run),
        ("chaos", |root| chaos(root, &["--quick".to_owned()])),
        ("fleet", |root| chaos(root, &["--quick".to_owned(), "--fleet".to_owned()])),
        ("docs", docs),
    ];
    let mut timings = Vec::new();
    for (name, step) in steps {
        println!("\n==> xtask {name}");
        let started = Instant::now();
        step(root).map_err(|e| format!("{name} failed: {e}"))?;
        timings.push((name, started.elapsed()));
    }
    println!("\nci passed:");
    for (name, took) in timings {
        println!("  {name:<10} {:>7.1}s", took.as_secs_f64());
    }
    Ok(())
}

pub(crate) fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(root);
    command
}

pub(crate) fn run_command(mut command: Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    println!("$ {shown}");
    let status = command.status().map_err(|e| format!("could not run {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{shown} exited with {status}")) }
}

fn fmt(root: &Path) -> Result<(), String> {
    let mut command = cargo(root);
    command.args(["fmt", "--all", "--check"]);
    run_command(command)
}

fn clippy(root: &Path) -> Result<(), String> {
    let mut command = cargo(root);
    command.args(["clippy", "--workspace", "--all-targets", "--all-features", "--locked", "--", "-D", "warnings"]);
    run_command(command)
}

fn has_nextest(root: &Path) -> bool {
    cargo(root)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(root: &Path) -> Result<(), String> {
    let postgres = postgres::ensure(root)?;
    if has_nextest(root) {
        let mut command = cargo(root);
        command.args(["nextest", "run", "--workspace", "--all-features", "--locked", "--no-fail-fast"]);
        command.env("DATABASE_URL", &postgres.url);
        run_command(command)?;
        let mut command = cargo(root);
        command.args(["test", "--workspace", "--all-features", "--locked", "--doc"]);
        run_command(command)
    } else {
        println!("cargo-nextest not found; using cargo test");
        let mut command = cargo(root);
        command.args(["test", "--workspace", "--all-features", "--locked", "--no-fail-fast"]);
        command.env("DATABASE_URL", &postgres.url);
        run_command(command)
    }
}

fn features(root: &Path) -> Result<(), String> {
    let metadata = Metadata::load(root)?;
    for package in metadata.members() {
        let mut command = cargo(root);
        command.args(["check", "--locked", "--package", &package.name]);
        run_command(command)?;
    }
    if let Some(facade) = metadata.facade() {
        let mut command = cargo(root);
        command.args(["check", "--locked", "--package", &facade.name, "--no-default-features"]);
        run_command(command)?;
        for feature in metadata.facade_provider_features() {
            let mut command = cargo(root);
            command.args([
                "check",
                "--locked",
                "--package",
                &facade.name,
                "--no-default-features",
                "--features",
                &feature,
            ]);
            run_command(command)?;
        }
    } else {
        println!("no facade crate yet: only crates alone were checked");
    }
    Ok(())
}

/// Packages with a contract suite: every provider, plus the testkit (its fake provider).
fn contract_packages(metadata: &Metadata) -> Result<Vec<&Package>, String> {
    let mut packages = Vec::new();
    for package in metadata.members() {
        let has_suite = package.test_targets.iter().any(|t| t == "contract");
        if package.is_provider() && !has_suite {
            return Err(format!(
                "provider crate `{}` has no tests/contract/main.rs (a `contract` test target) running the contract suite",
                package.name
            ));
        }
        if has_suite {
            packages.push(package);
        }
    }
    Ok(packages)
}

fn contract(root: &Path) -> Result<(), String> {
    let metadata = Metadata::load(root)?;
    let packages = contract_packages(&metadata)?;
    let mut summary = Vec::new();
    for package in packages {
        let mut command = cargo(root);
        command.args(["test", "--locked", "--all-features", "--package", &package.name, "--test", "contract"]);
        println!("$ {command:?}");
        let output = command.output().map_err(|e| format!("could not run cargo test: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        if !output.status.success() {
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
            return Err(format!("the contract suite of `{}` failed", package.name));
        }
        let passed = passed_count(&stdout);
        let suite = stdout.lines().filter(|l| l.contains("contract_suite::")).count();
        if passed == 0 || suite == 0 {
            return Err(format!(
                "the contract suite of `{}` ran zero tests (passed: {passed}, suite tests: {suite})",
                package.name
            ));
        }
        summary.push((package.name.clone(), passed, suite));
    }
    println!("\ncontract suites:");
    for (name, passed, suite) in summary {
        println!("  {name:<24} {passed:>3} passed ({suite} scenario tests)");
    }
    Ok(())
}

/// Sums `N passed` over every `test result:` line of libtest output.
pub fn passed_count(output: &str) -> usize {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("test result: "))
        .filter_map(|rest| {
            let before = rest.split(" passed").next()?;
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum()
}

/// `handover-chaos`: the fault matrix. The full run builds in release; `--quick` reuses the
/// debug build the tests made.
fn chaos(root: &Path, args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let fleet = args.iter().any(|a| a == "--fleet");
    let report = root.join("target/chaos");
    std::fs::create_dir_all(&report).map_err(|e| format!("cannot create {}: {e}", report.display()))?;
    let mut command = cargo(root);
    command.args(["run", "--locked", "--package", "handover-chaos"]);
    if !quick {
        command.arg("--release");
    }
    // The fleet runs the real `handover serve` binary, on a PostgreSQL it may restart.
    let _postgres = if fleet {
        let mut build = cargo(root);
        build.args(["build", "--locked", "--package", "handover-cli"]);
        if !quick {
            build.arg("--release");
        }
        run_command(build)?;
        let bin = root.join("target").join(if quick { "debug" } else { "release" }).join("handover");
        command.env("HANDOVER_BIN", bin);
        let postgres = postgres::throwaway(root)?;
        command.env("DATABASE_URL", &postgres.url);
        if let Some(restart) = postgres.restart_command() {
            command.env("HANDOVER_CHAOS_PG_RESTART", restart);
        }
        Some(postgres)
    } else {
        None
    };
    let name = if fleet { "fleet.json" } else { "report.json" };
    command.arg("--").args(args).arg("--json").arg(report.join(name));
    run_command(command)
}

/// `handover-bench`: always a release build; the arguments (`--quick`, `--only N`) are passed on.
fn bench(root: &Path, args: &[String]) -> Result<(), String> {
    let report = root.join("target/bench/report.json");
    // The service's scenarios measure PostgreSQL rows too.
    let postgres = postgres::ensure(root)?;
    let mut command = cargo(root);
    command.env("DATABASE_URL", &postgres.url);
    command
        .args(["run", "--locked", "--release", "--package", "handover-bench", "--"])
        .args(args)
        .arg("--out")
        .arg(report);
    run_command(command)
}

/// Writes the service's OpenAPI document (a test keeps the served one equal to it).
fn openapi(root: &Path) -> Result<(), String> {
    let mut command = cargo(root);
    command.args(["run", "--quiet", "--locked", "--package", "handover-server", "--example", "openapi"]);
    println!("$ {command:?}");
    let output = command.output().map_err(|e| format!("could not run the openapi example: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let path = root.join("handover-server/openapi.json");
    std::fs::write(&path, &output.stdout).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn tidy_cmd(root: &Path) -> Result<(), String> {
    let problems = tidy::check(root)?;
    if problems.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        Err(format!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  ")))
    }
}

fn docs(root: &Path) -> Result<(), String> {
    let mut command = cargo(root);
    command.args(["doc", "--workspace", "--no-deps", "--all-features", "--locked"]).env("RUSTDOCFLAGS", "-D warnings");
    run_command(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_counts_are_summed_over_result_lines() {
        let output = "running 2 tests\ntest a ... ok\ntest result: ok. 2 passed; 0 failed; 0 ignored\n\
                      test result: ok. 13 passed; 0 failed\n";
        assert_eq!(passed_count(output), 15);
        assert_eq!(passed_count("test result: ok. 0 passed; 0 failed"), 0);
    }
}
