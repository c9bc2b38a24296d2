//! `cargo xtask service`: the service as its users meet it. `handover serve --demo`, then the
//! Python and the Node example bots through a whole handover each, then a schema-driven
//! fuzz of the API from its OpenAPI document (schemathesis, from PyPI, in a virtualenv
//! under `target/`), which must find no 5xx and no answer that breaks the schema.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The schemathesis release the fuzz is written for.
const SCHEMATHESIS: &str = "schemathesis>=4.3,<5";
/// How long one example bot may take (a hang guard).
const BOT_LIMIT: Duration = Duration::from_secs(120);

struct Demo {
    child: Child,
    url: String,
    key: String,
    /// Each emulator's agent desk, by provider.
    desks: Vec<(String, String)>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(binary: &Path) -> Result<Demo, String> {
    let mut child = Command::new(binary)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--step-ms", "100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    let mut key = None;
    let mut desks = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("handover serve --demo: the service at ") {
            url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("API key:") {
            key = Some(rest.trim().to_owned());
        }
        // `  <provider>  http://127.0.0.1:<port>/_emulator/desk`
        if let [provider, desk] = line.split_whitespace().collect::<Vec<_>>()[..]
            && desk.ends_with("/_emulator/desk")
        {
            desks.push((provider.to_owned(), desk.to_owned()));
        }
        // The live view's line comes after every desk.
        if line.starts_with("Watch every handover") {
            break;
        }
    }
    // Keep reading, so the demo never writes into a closed pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    match (url, key) {
        (Some(url), Some(key)) => {
            println!("demo: {url}");
            Ok(Demo { child, url, key, desks })
        }
        _ => Err("handover serve --demo printed no URL and API key".to_owned()),
    }
}

/// Runs `command` to its end within `limit`.
fn run_within(mut command: Command, limit: Duration) -> Result<(), String> {
    let shown = format!("{command:?}");
    println!("$ {shown}");
    let mut child = command.spawn().map_err(|e| format!("could not run {shown}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() { Ok(()) } else { Err(format!("{shown} exited with {status}")) };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(format!("{shown} did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tool(name: &str, install: &str) -> Result<(), String> {
    match Command::new(name).arg("--version").stdout(Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!("`{name}` is needed to run the example bots; {install}")),
    }
}

/// The schemathesis command, installed into `target/schemathesis` on first use.
fn schemathesis(root: &Path) -> Result<PathBuf, String> {
    let venv = venv_with(root, "target/schemathesis", SCHEMATHESIS, |venv| venv.join("bin/schemathesis").is_file())?;
    Ok(venv.join("bin/schemathesis"))
}

/// The Selenium release the browser test is written for.
const SELENIUM: &str = "selenium>=4.10,<5";

/// A Python with Selenium, in `target/browser-venv` (made on first use).
fn selenium_python(root: &Path) -> Result<PathBuf, String> {
    let ready = |venv: &Path| {
        let check =
            Command::new(venv.join("bin/python")).args(["-c", "import selenium"]).stderr(Stdio::null()).status();
        check.is_ok_and(|s| s.success())
    };
    Ok(venv_with(root, "target/browser-venv", SELENIUM, ready)?.join("bin/python"))
}

/// A Python virtualenv at `dir` (under `root`) with `package` installed, made on first use
/// (`ready` says whether an existing one already has it).
fn venv_with(root: &Path, dir: &str, package: &str, ready: impl Fn(&Path) -> bool) -> Result<PathBuf, String> {
    let venv = root.join(dir);
    if ready(&venv) {
        return Ok(venv);
    }
    println!("installing {package} into {}", venv.display());
    crate::run_command({
        let mut command = Command::new("python3");
        command.args(["-m", "venv"]).arg(&venv);
        command
    })?;
    crate::run_command({
        let mut command = Command::new(venv.join("bin/pip"));
        command.args(["install", "--quiet", "--disable-pip-version-check", package]);
        command
    })?;
    Ok(venv)
}

/// The agent desk in headless Chromium through a whole handover (`xtask/browser/desk_test.py`),
/// against the demo's `provider`, with screenshots in `target/browser`.
fn browser(root: &Path, demo: &Demo, provider: &str) -> Result<(), String> {
    for (binary, package) in [("chromedriver", "chromium-driver")] {
        if Command::new(binary).arg("--version").stdout(Stdio::null()).status().is_err() {
            return Err(format!(
                "`{binary}` is needed for the browser test; install Chromium and its driver \
                 (apt-get install chromium {package})"
            ));
        }
    }
    let desk = demo
        .desks
        .iter()
        .find(|(p, _)| p == provider)
        .map(|(_, url)| url.clone())
        .ok_or_else(|| format!("the demo printed no desk for `{provider}`"))?;
    let python = selenium_python(root)?;
    let screenshots = root.join("target/browser");
    std::fs::create_dir_all(&screenshots).map_err(|e| format!("{}: {e}", screenshots.display()))?;
    let mut command = Command::new(python);
    command
        .arg(root.join("xtask/browser/desk_test.py"))
        .env("DESK_URL", desk)
        .env("SERVICE_URL", &demo.url)
        .env("API_KEY", &demo.key)
        .env("PROVIDER", provider)
        .env("SCREENSHOT_DIR", &screenshots);
    run_within(command, Duration::from_secs(180))
}

/// The example bots, the browser test and the fuzz, against one demo.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    tool("python3", "install Python 3 (apt-get install python3)")?;
    tool("node", "install Node.js 18 or newer (apt-get install nodejs)")?;
    crate::run_command({
        let mut command = crate::cargo(root);
        command.args(["build", "--locked", "--package", "handover-cli"]);
        command
    })?;
    let binary = root.join("target/debug/handover");
    let demo = start_demo(&binary)?;
    let bots = [
        ("python3", root.join("examples/python/bot.py"), "miaw"),
        ("node", root.join("examples/node/bot.mjs"), "liveagent"),
    ];
    for (runtime, script, provider) in bots {
        let mut command = Command::new(runtime);
        command
            .arg(&script)
            .env("HANDOVER_URL", &demo.url)
            .env("HANDOVER_API_KEY", &demo.key)
            .env("HANDOVER_PROVIDER", provider);
        run_within(command, BOT_LIMIT)?;
    }
    browser(root, &demo, "miaw")?;
    let fuzzer = schemathesis(root)?;
    let schema = fuzz_schema(root)?;
    let mut command = Command::new(fuzzer);
    command
        .arg("run")
        .arg(&schema)
        .args(["--url", &demo.url])
        .args(["--header", &format!("Authorization: Bearer {}", demo.key)])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "50", "--seed", "20261205", "--exclude-path", "/metrics", "--workers", "2"])
        .env("NO_COLOR", "1")
        // Its cache of crashes goes next to the build, not into the repository.
        .current_dir(root.join("target"));
    run_within(command, Duration::from_secs(600))?;
    drop(demo);
    Ok(())
}

/// The checked-in OpenAPI document (a test keeps it equal to the served one) with every
/// `wait_ms` capped at 2 s for the fuzz: a long poll on a live handover holds for `wait_ms`,
/// and a fuzz that draws values up to the API's 60 s would wait minutes for nothing (the
/// limits themselves are covered by handover-cli's serve tests).
fn fuzz_schema(root: &Path) -> Result<PathBuf, String> {
    let source = root.join("handover-server/openapi.json");
    let text = std::fs::read_to_string(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let mut document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", source.display()))?;
    fn cap(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("name").and_then(serde_json::Value::as_str) == Some("wait_ms")
                    && let Some(schema) = map.get_mut("schema").and_then(serde_json::Value::as_object_mut)
                {
                    schema.insert("maximum".to_owned(), serde_json::json!(2000));
                }
                map.values_mut().for_each(cap);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(cap),
            _ => {}
        }
    }
    cap(&mut document);
    let path = root.join("target/schemathesis-openapi.json");
    std::fs::write(&path, document.to_string()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
