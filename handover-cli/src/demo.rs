//! `handover demo` and `handover emulate`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use handover::node::{NodeConfig, NodeInput, NodeOutput};
use handover::{EndUser, HandoverRequest, Registry, Speaker, TranscriptEntry};
use handover_emulator::{AgentScript, Emulator, EmulatorOptions, PROTOCOLS};
use tokio::sync::mpsc;

use crate::output::Printer;
use crate::run::{self, PUSH_PROVIDERS};
use crate::{EXIT_USAGE, input};

fn demo_node() -> NodeConfig {
    let mut node = NodeConfig::default();
    node.accepted_message = "Connecting you to an agent.".to_owned();
    node.cancel_button_text = Some("Cancel".to_owned());
    node.cancel_intent = Some("cancel_handover".to_owned());
    node.send_queue_event = true;
    node.send_active_event = true;
    node.send_resolve_event = true;
    node
}

fn demo_request() -> HandoverRequest {
    HandoverRequest::new(
        format!("demo-{}", uuid::Uuid::new_v4()),
        EndUser::new("demo-user").with_name("Jane Doe").with_email("jane@example.com").with_language("en"),
    )
    .with_transcript(vec![
        TranscriptEntry::new(Speaker::User, "Hi, I was charged twice this month."),
        TranscriptEntry::new(Speaker::Bot, "Sorry to hear that. Let me connect you to a billing agent."),
    ])
}

/// What the demo's scripted user does after each agent message.
#[derive(Clone, Copy)]
enum Step {
    /// Says this.
    Say(&'static str),
    /// Sends the invoice file (skipped for a provider that carries no files to the agent).
    File,
}

const USER_STEPS: [Step; 3] = [
    Step::Say("Hello! I was charged twice for my subscription."),
    Step::File,
    Step::Say("Thanks, that's all I needed. Bye!"),
];

/// The file the scripted user sends: a small text "invoice".
const INVOICE: (&str, &str, &[u8]) =
    ("invoice-2026-11.txt", "text/plain", b"Invoice 2026-11\nSubscription  9.99\nSubscription  9.99 (charged twice)\n");

/// The scripted user's file input: bytes for providers that upload, a URL the emulator
/// hosts for providers that take links.
fn invoice_input(caps: &handover::Capabilities, emulator: &Emulator) -> Option<NodeInput> {
    use base64::Engine as _;
    let (name, media_type, bytes) = INVOICE;
    let (url, data) = if caps.attachment_uploads() {
        (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes)))
    } else if caps.attachment_links() {
        let file = handover_emulator::EmulatedFile::new(name, media_type, bytes.to_vec());
        (Some(emulator.hub().host_file(file)), None)
    } else {
        return None;
    };
    Some(NodeInput::Attachment {
        name: Some(name.to_owned()),
        media_type: Some(media_type.to_owned()),
        url,
        path: None,
        data,
        caption: None,
        fetch: false,
        id: None,
    })
}

pub(crate) async fn run(registry: &Registry, provider: &str, interactive: bool, json: bool, step_ms: u64) -> ExitCode {
    if !registry.is_enabled(provider) || !PROTOCOLS.contains(&provider) {
        let available: Vec<&str> = registry.enabled_providers().into_iter().filter(|p| PROTOCOLS.contains(p)).collect();
        eprintln!("error: no demo for provider `{provider}`; available: {}", available.join(", "));
        return ExitCode::from(EXIT_USAGE);
    }
    let mut script = AgentScript::default();
    script.step = Duration::from_millis(step_ms);
    let mut options = EmulatorOptions::default().scripted(script);
    // Push providers deliver to our webhook listener; start it first, then build the provider.
    let listener = if PUSH_PROVIDERS.contains(&provider) {
        match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("error: cannot listen for webhooks: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if let Some(listener) = &listener
        && let Ok(addr) = listener.local_addr()
    {
        options = options.with_webhook_url(format!("http://{addr}/webhooks/{provider}"));
    }
    let emulator = match Emulator::start(provider, options).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("error: the {provider} emulator did not start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let table = match toml::Value::try_from(emulator.provider_config()) {
        Ok(table) => table,
        Err(error) => {
            eprintln!("error: the emulator's provider config is not TOML: {error}");
            return ExitCode::FAILURE;
        }
    };
    let provider_impl = match registry.build(provider, table) {
        Ok(p) => p,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _webhooks = listener.map(|listener| {
        run::WebhookServer::spawn(listener, provider_impl.clone(), handover::webhook::ListenerLimits::default())
    });
    if !json {
        eprintln!("demo: {} against a loopback emulator at {}", provider_impl.info().display_name, emulator.url());
        if interactive {
            eprintln!("demo: type messages; \"transfer\" asks for another agent, \"bye\" ends; /button Cancel cancels");
        }
    }
    let (input_tx, inputs) = mpsc::channel(32);
    let mut script_user: Option<mpsc::Sender<NodeInput>> = None;
    if interactive {
        input::spawn_stdin(input_tx, json);
    } else {
        script_user = Some(input_tx);
    }
    let invoice = invoice_input(&provider_impl.info().capabilities, &emulator);
    let has_file = invoice.is_some();
    let mut steps = USER_STEPS.iter().filter(move |s| has_file || !matches!(s, Step::File));
    let status = run::drive(provider_impl, demo_node(), demo_request(), inputs, Printer::new(json), move |output| {
        if let (NodeOutput::AgentMessage { .. }, Some(user)) = (output, &script_user)
            && let Some(step) = steps.next()
        {
            let (input, shown) = match (step, &invoice) {
                (Step::Say(line), _) => (NodeInput::Message { text: (*line).to_owned(), id: None }, (*line).to_owned()),
                (Step::File, Some(file)) => (file.clone(), format!("[file] {}", INVOICE.0)),
                (Step::File, None) => return,
            };
            let _ = user.try_send(input);
            let mut printer = Printer::new(json);
            if !json {
                printer.print(&NodeOutput::Say { text: format!("(you) {shown}"), quick_replies: Vec::new() });
            }
        }
    })
    .await;
    drop(emulator);
    run::exit_code(&status)
}

pub(crate) async fn emulate(provider: &str, listen: SocketAddr, manual: bool, webhook_url: Option<String>) -> ExitCode {
    let mut options = EmulatorOptions::default();
    if !manual {
        options = options.scripted(AgentScript::default());
    }
    if let Some(url) = webhook_url {
        options = options.with_webhook_url(url);
    }
    let emulator = match Emulator::start_on(provider, listen, options).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    eprintln!("emulating {provider} at {} (control API under /_emulator/); Ctrl-C or SIGTERM stops", emulator.url());
    eprintln!("agent desk: {}/_emulator/desk (play the agent in a browser)", emulator.url());
    let mut table = toml::map::Map::new();
    if let Ok(config) = toml::Value::try_from(emulator.provider_config()) {
        table.insert(provider.to_owned(), config);
    }
    println!("provider = \"{provider}\"\n\n{}", toml::to_string(&table).unwrap_or_default());
    match crate::signals::Signals::new() {
        Ok(mut signals) => {
            let name = signals.recv().await;
            eprintln!("{name}: stopping the emulator");
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    drop(emulator);
    ExitCode::SUCCESS
}
