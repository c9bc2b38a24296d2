//! Emulators in a separate process: `handover-bench serve <protocol>` runs one and prints
//! `{"url": …, "config": …}`; the driver talks to its control API.

use std::process::Stdio;

use handover_transport::reqwest;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The seed both processes derive the 8x8 signing key from.
pub(crate) const KEY_SEED: &str = "20261124";

/// Runs an emulator until killed (the child side).
pub(crate) fn serve(protocol: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let emulator = handover_emulator::Emulator::start(protocol, handover_emulator::EmulatorOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        println!("{}", json!({ "url": emulator.url(), "config": emulator.provider_config() }));
        emulator.wait().await;
        Ok(())
    })
}

/// An emulator process.
pub(crate) struct Remote {
    child: Child,
    pub(crate) url: String,
    pub(crate) config: Value,
    http: reqwest::Client,
}

impl Remote {
    /// Starts `protocol`'s emulator in a child process.
    pub(crate) async fn spawn(protocol: &str) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["serve", protocol])
            .env(handover_emulator::eightbyeight::KEY_SEED_ENV, KEY_SEED)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the emulator process: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("the emulator process said nothing")?;
        let hello: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        let url = hello["url"].as_str().ok_or("no url")?.to_owned();
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().map_err(|e| e.to_string())?;
        Ok(Self { child, url, config: hello["config"].clone(), http })
    }

    /// The provider config table for the facade's registry.
    pub(crate) fn table(&self, overrides: Value) -> Result<toml::Value, String> {
        let mut config = self.config.clone();
        if let (Some(config), Value::Object(overrides)) = (config.as_object_mut(), overrides) {
            config.extend(overrides);
        }
        toml::Value::try_from(config).map_err(|e| e.to_string())
    }

    /// An agent action through the control API.
    pub(crate) async fn act(&self, conversation: &str, action: &Value) -> Result<(), String> {
        let url = format!("{}/_emulator/conversations/{conversation}/agent", self.url);
        let response = self.http.post(url).json(action).send().await.map_err(|e| e.to_string())?;
        if response.status().is_success() { Ok(()) } else { Err(format!("act: {}", response.status())) }
    }

    /// Every conversation (`id`, `owner`, …).
    pub(crate) async fn conversations(&self) -> Result<Vec<Value>, String> {
        let url = format!("{}/_emulator/conversations", self.url);
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// Counters and stamped-message latencies (taken out).
    pub(crate) async fn stats(&self) -> Result<Value, String> {
        let url = format!("{}/_emulator/stats", self.url);
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// A counter's value.
    pub(crate) async fn counter(&self, name: &str) -> Result<u64, String> {
        Ok(self.stats().await?["counters"][name].as_u64().unwrap_or(0))
    }

    /// Stops the process.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
