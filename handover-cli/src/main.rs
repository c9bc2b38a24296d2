//! `handover`: run, demo and check bot-to-human handovers.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod demo;
mod input;
mod output;
mod run;
mod serve;
mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handover::Registry;
use handover::config::Config;

/// Exit status for bad usage or configuration.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(name = "handover", version, about = "Hand a chatbot conversation over to a human agent in a contact center.")]
#[command(
    after_help = "Start with `handover demo`: a full handover against a loopback emulator, no credentials needed."
)]
struct Cli {
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace). RUST_LOG overrides.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// Log format on stderr: `text` for people, `json` (one object per line) for collectors.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A full handover against the in-process emulator of a provider, no credentials needed.
    #[command(
        after_help = "Examples:\n  handover demo\n  handover demo --provider miaw --interactive\n  handover demo --json"
    )]
    Demo {
        /// The provider to emulate.
        #[arg(long, default_value = "miaw")]
        provider: String,
        /// Type the user's messages yourself ("bye" asks the agent to end, "transfer" to transfer).
        #[arg(long)]
        interactive: bool,
        /// Print the JSON lines of `handover chat --json` instead of the human view.
        #[arg(long)]
        json: bool,
        /// Pause of the scripted agent between steps, in milliseconds.
        #[arg(long, default_value_t = 600, hide = true)]
        step_ms: u64,
    },
    /// A real handover configured by a TOML file; user input on stdin, output on stdout.
    #[command(after_help = "Examples:\n  handover chat --config handover.toml\n  \
        echo '{\"type\":\"message\",\"text\":\"Hi\"}' | handover chat --config handover.toml --json\n  \
        echo '{\"type\":\"attachment\",\"path\":\"invoice.pdf\"}' | handover chat --config handover.toml --json\n\n\
        Without --json a line is a message; /file PATH sends a file, /button TEXT and /intent NAME the others.\n\n\
        Exit status: 0 completed or cancelled, 1 error, 2 bad usage or config.")]
    Chat {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// JSON lines on stdin and stdout.
        #[arg(long)]
        json: bool,
    },
    /// Checks a config file and the provider's credentials (authenticates, starts nothing).
    #[command(after_help = "Example:\n  handover check --config handover.toml")]
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The handover service: every configured provider over HTTP, for bots in any language,
    /// on as many instances as share the store.
    #[command(
        after_help = "Examples:\n  handover serve --demo\n  HANDOVER_API_KEYS=... HANDOVER_KEY=$(openssl rand -base64 32) \
        handover serve --config server.toml --log info --log-format json\n\n\
        SIGTERM or SIGINT drains: /readyz fails, state is saved, leases are released, exit 0.\n\
        The API: GET /openapi.json. Exit status: 0 drained, 1 failed, 2 bad usage or config."
    )]
    Serve {
        /// The config file (see the handover-server README).
        #[arg(long, short, required_unless_present = "demo", conflicts_with = "demo")]
        config: Option<PathBuf>,
        /// Every provider against its in-process emulator, a temporary store and a fresh API
        /// key: prints a ready-to-paste `curl`.
        #[arg(long)]
        demo: bool,
        /// Where the demo listens.
        #[arg(long, default_value = "127.0.0.1:8080", requires = "demo")]
        listen: SocketAddr,
        /// Pause of the demo's scripted agents between steps, in milliseconds.
        #[arg(long, default_value_t = 600, hide = true)]
        step_ms: u64,
    },
    /// Runs a provider's emulator until interrupted, and prints the config that points at it.
    #[command(
        after_help = "Examples:\n  handover emulate --provider miaw\n  handover emulate --provider miaw --listen 127.0.0.1:8080 --manual"
    )]
    Emulate {
        /// The provider to emulate.
        #[arg(long)]
        provider: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// No scripted agent: drive the agent side through the /_emulator/ control API.
        #[arg(long)]
        manual: bool,
        /// Where push providers deliver webhooks (the `[webhook] listen` address of `chat`).
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

fn init_logging(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false);
    if format == "json" {
        builder.json().with_current_span(true).with_span_list(false).init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, &cli.log_format);
    let registry = Registry::new();
    match cli.command {
        Command::Demo { provider, interactive, json, step_ms } => {
            demo::run(&registry, &provider, interactive, json, step_ms).await
        }
        Command::Chat { config, json } => match Config::load(&config) {
            Ok(config) => run::chat(&registry, config, json).await,
            Err(error) => usage_error(&error),
        },
        Command::Check { config } => match Config::load(&config) {
            Ok(config) => run::check(&registry, &config).await,
            Err(error) => usage_error(&error),
        },
        Command::Serve { config, demo, listen, step_ms } => serve::run(&registry, config, demo, listen, step_ms).await,
        Command::Emulate { provider, listen, manual, webhook_url } => {
            demo::emulate(&provider, listen, manual, webhook_url).await
        }
    }
}

fn usage_error(error: &handover::Error) -> ExitCode {
    eprintln!("error: {}", error.message());
    ExitCode::from(EXIT_USAGE)
}
