//! Helpers shared by the end-to-end tests: run the `handover` binary and talk to it.

#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code, unreachable_pub)] // test helpers: a panic is the failure report; HANDOVER_TEST_ECHO echoes stdout lines

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_handover");
/// A hang guard, not a timing assertion.
pub const GUARD: Duration = Duration::from_secs(30);

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handover-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running `handover` process with line access to stdin and stdout.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_command(Command::new(BIN).args(args).envs(env.iter().copied()))
    }

    /// Runs the binary with the soft open-file limit lowered to `limit` (through
    /// `sh -c 'ulimit -Sn …; exec …'`), as a service manager's default would leave it.
    pub fn spawn_with_open_file_limit(args: &[&str], env: &[(&str, &str)], limit: u64) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {limit} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(args)
            .envs(env.iter().copied());
        Self::spawn_command(&mut command)
    }

    fn spawn_command(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary runs");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines }
    }

    pub fn send(&mut self, line: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Writes raw bytes to stdin (lines that are not JSON, or not UTF-8).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line as JSON.
    pub fn next(&self) -> Value {
        let line = self.lines.recv_timeout(GUARD).expect("a stdout line before the guard");
        if std::env::var_os("HANDOVER_TEST_ECHO").is_some() {
            eprintln!("LINE {line}");
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    }

    /// Lines until one matches `until` (inclusive).
    pub fn until(&self, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.next();
            let done = until(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    pub fn wait(mut self) -> i32 {
        self.stdin = None;
        self.exit_code_within(GUARD)
    }

    /// The exit code, with stdin still open (as a bot that keeps its pipe open), within
    /// `limit`: the process must exit on its own after its final status.
    pub fn exit_code_within(&mut self, limit: Duration) -> i32 {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "the process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends signal `name` (`TERM`, `HUP`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }
}

/// After a signal: the last line is an `error` status, the exit code 1, and the
/// conversation is closed at the contact center. Stdin stays open throughout.
pub fn assert_signal_ends_the_handover(
    rt: &tokio::runtime::Runtime,
    mut proc: Proc,
    conversation: &handover_emulator::Conversation,
    signal: &str,
) {
    proc.signal(signal);
    let lines = proc.until(is_status);
    let status = lines.last().unwrap();
    assert_eq!(status["status"], "error", "{signal}: {lines:?}");
    assert!(status["error"]["message"].as_str().unwrap_or_default().contains("interrupted"), "{status}");
    assert_eq!(proc.exit_code_within(Duration::from_secs(10)), 1, "{signal}: the documented exit code");
    let closed = wait(rt, conversation.wait_for(|v| v.closed_by_customer));
    assert!(closed.closed_by_customer, "{signal}: the conversation is closed at the contact center");
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn agent_message(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |line| line["type"] == "agent_message" && line["text"] == text
}

pub fn is_status(line: &Value) -> bool {
    line["type"] == "status"
}

/// Runs `future` on `rt`, failing the test if it does not finish within the guard.
pub fn wait<T>(rt: &tokio::runtime::Runtime, future: impl Future<Output = T>) -> T {
    rt.block_on(async { tokio::time::timeout(GUARD, future).await.expect("finished within the guard") })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A port nobody listens on right now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `protocol`'s emulator (scripted when `script` is given). With `push`, webhooks go
/// to `http://127.0.0.1:<port>/webhooks/<protocol>` on a free port, returned for the
/// config's `[webhook] listen`.
pub fn emulator(
    rt: &tokio::runtime::Runtime,
    protocol: &str,
    script: Option<handover_emulator::AgentScript>,
    push: bool,
) -> (handover_emulator::Emulator, u16) {
    let port = free_port();
    let mut options = handover_emulator::EmulatorOptions::default();
    if push {
        options = options.with_webhook_url(format!("http://127.0.0.1:{port}/webhooks/{protocol}"));
    }
    if let Some(script) = script {
        options = options.scripted(script);
    }
    (rt.block_on(handover_emulator::Emulator::start(protocol, options)).unwrap(), port)
}

/// Writes `text` as `handover.toml` in a fresh temp dir for test `name`.
pub fn write_config(name: &str, text: &str) -> PathBuf {
    let path = temp_dir(name).join("handover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `handover chat --config <config> --json`, with `env` (secrets reach the child through
/// `*_env` keys, as users pass them).
pub fn chat(config: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    Proc::spawn_with_env(&["chat", "--config", config.to_str().unwrap(), "--json"], env)
}

/// The texts of the `agent_message` lines.
pub fn agent_texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "agent_message")
        .filter_map(|l| l["text"].as_str())
        .map(str::to_owned)
        .collect()
}

/// `handover demo --provider <provider> --json` with short steps: exits 0, last line
/// `completed`.
pub fn assert_demo_completes(provider: &str) {
    let output =
        Command::new(BIN).args(["demo", "--provider", provider, "--json", "--step-ms", "20"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().last().unwrap_or_default().contains("\"completed\""), "{stdout}");
}
