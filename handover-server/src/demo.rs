//! `handover serve --demo`: the service against the emulators of every provider, with a
//! temporary store, a throwaway key and a fresh API key, so a bot author can try the API
//! with no account anywhere.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use handover::Registry;
use handover_emulator::{AgentScript, Emulator, EmulatorOptions, PROTOCOLS};
use tokio::net::TcpListener;

use crate::{ServeError, Server, ServerConfig};

/// A running demo: the service, the emulators behind it, and what a bot needs to call it.
pub struct Demo {
    /// The service.
    pub server: Server,
    /// The API key to send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// The config the service runs with (the key itself comes from `HANDOVER_KEY`).
    pub config_text: String,
    /// The emulators and the temporary store: they live as long as this does.
    pub backing: Backing,
}

/// What a demo runs against: the emulators, and the temporary directory of its store
/// (removed on drop).
pub struct Backing {
    /// The temporary directory holding the store.
    pub dir: PathBuf,
    emulators: Vec<Emulator>,
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo").field("server", &self.server).field("emulators", &self.backing.emulators.len()).finish()
    }
}

impl Demo {
    /// The service's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// The emulator of `provider`.
    pub fn emulator(&self, provider: &str) -> Option<&Emulator> {
        self.backing.emulators.iter().find(|e| e.protocol() == provider)
    }

    /// What to print: where it listens, the API key, and a `curl` to paste.
    pub fn banner(&self) -> String {
        let url = self.url();
        let key = &self.api_key;
        let mut text = String::new();
        let _ = writeln!(text, "handover serve --demo: the service at {url}, every provider against its emulator");
        let _ = writeln!(text, "providers: {}", PROTOCOLS.join(", "));
        let _ = writeln!(text, "API key:   {key}");
        let _ = writeln!(text, "store:     {} (removed on exit)", self.backing.dir.display());
        let _ = writeln!(text);
        let _ = writeln!(text, "Start a handover, then read its events as they come:");
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "  curl -s -X POST {url}/v1/handovers -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    \
             -d '{{\"provider\":\"miaw\",\"user\":{{\"id\":\"u-1\",\"name\":\"Jane\"}},\"transcript\":[{{\"from\":\"user\",\"text\":\"I was charged twice\"}}]}}'"
        );
        let _ = writeln!(
            text,
            "  curl -sN {url}/v1/handovers/<id>/events -H 'Authorization: Bearer {key}' -H 'Accept: text/event-stream'"
        );
        let _ = writeln!(text);
        let _ = writeln!(text, "Answer the agent (\"bye\" ends the chat):");
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "  curl -s -X POST {url}/v1/handovers/<id>/inputs -H 'Authorization: Bearer {key}' \\\n    \
             -d '{{\"type\":\"message\",\"text\":\"bye\",\"id\":\"m-1\"}}'"
        );
        let _ = writeln!(text);
        let _ = writeln!(text, "Play the agent yourself on a provider's desk (the scripted agent answers too):");
        let _ = writeln!(text);
        for emulator in &self.backing.emulators {
            let _ = writeln!(text, "  {:<12} {}/_emulator/desk", emulator.protocol(), emulator.url());
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "Watch every handover, its events, owner and lease: {url}/ui (paste the API key).");
        let _ = writeln!(text);
        let _ = writeln!(text, "The API: {url}/openapi.json. The config this demo runs with:");
        let _ = writeln!(text);
        text.push_str(&self.config_text);
        text
    }
}

/// Starts the demo on `listen` with the scripted agent pausing `step` between steps.
pub async fn start(listen: SocketAddr, step: Duration, registry: &Registry) -> Result<Demo, ServeError> {
    let listener = TcpListener::bind(listen).await.map_err(|source| ServeError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: listen, source })?;
    let dir = std::env::temp_dir().join(format!("handover-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ServeError::Config(format!("cannot create the demo's directory {}: {e}", dir.display())))?;
    let mut script = AgentScript::default();
    script.step = step;
    let mut emulators = Vec::new();
    let mut providers = String::new();
    for protocol in PROTOCOLS {
        let options = EmulatorOptions::default()
            .scripted(script.clone())
            .with_webhook_url(format!("http://{addr}/webhooks/{protocol}"));
        let emulator = Emulator::start(protocol, options)
            .await
            .map_err(|e| ServeError::Config(format!("the {protocol} emulator did not start: {e}")))?;
        let table = toml::Value::try_from(emulator.provider_config())
            .map_err(|e| ServeError::Config(format!("the {protocol} emulator's config is not TOML: {e}")))?;
        let mut section = toml::Table::new();
        section.insert("type".to_owned(), toml::Value::String(protocol.to_owned()));
        if let toml::Value::Table(keys) = table {
            section.extend(keys);
        }
        let mut wrapper = toml::Table::new();
        let mut named = toml::Table::new();
        named.insert(protocol.to_owned(), toml::Value::Table(section));
        wrapper.insert("providers".to_owned(), toml::Value::Table(named));
        providers.push_str(&toml::to_string(&wrapper).map_err(|e| ServeError::Config(e.to_string()))?);
        providers.push('\n');
        emulators.push(emulator);
    }
    let api_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let key = base64::engine::general_purpose::STANDARD.encode(rand_key());
    let store = format!("sqlite://{}", dir.join("handover.db").display());
    let config_text = format!(
        "[server]\nlisten = \"{addr}\"\nstore = \"{store}\"\ninstance_id = \"demo\"\napi_keys = [\"{api_key}\"]\n\
         encryption_key_env = \"HANDOVER_KEY\"\nui = true\n\n[node]\naccepted_message = \"Connecting you to an agent.\"\n\
         cancel_intent = \"cancel_handover\"\ncancel_button_text = \"Cancel\"\nsend_queue_event = true\n\
         send_active_event = true\nsend_resolve_event = true\n\n{providers}"
    );
    let config =
        ServerConfig::parse(&config_text, "demo config", &|name| (name == "HANDOVER_KEY").then(|| key.clone()))
            .map_err(|e| ServeError::Config(e.to_string()))?;
    let server = Server::start_on(listener, config, registry).await?;
    Ok(Demo { server, api_key, config_text, backing: Backing { dir, emulators } })
}

/// 32 random bytes (two v4 UUIDs: the OS's random source).
fn rand_key() -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}
