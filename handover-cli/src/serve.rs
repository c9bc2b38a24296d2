//! `handover serve`: the service until SIGTERM or SIGINT, then a drain.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use handover::Registry;
use handover_server::{Server, ServerConfig};

use crate::EXIT_USAGE;
use crate::signals::Signals;

pub(crate) async fn run(
    registry: &Registry,
    config: Option<PathBuf>,
    demo: bool,
    listen: SocketAddr,
    step_ms: u64,
) -> ExitCode {
    // Listen for signals before anything starts, so an early SIGTERM still drains.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot listen for signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (server, _demo) = if demo {
        match handover_server::demo::start(listen, Duration::from_millis(step_ms), registry).await {
            Ok(demo) => {
                // A reader that goes away (a closed pipe) does not stop the service.
                let _ = writeln!(std::io::stdout(), "{}", demo.banner());
                // The demo's emulators and store live as long as the server.
                (demo.server, Some(demo.backing))
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let Some(path) = config else {
            eprintln!("error: give --config <file> or --demo");
            return ExitCode::from(EXIT_USAGE);
        };
        let config = match ServerConfig::load(&path) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        match Server::start(config, registry).await {
            Ok(server) => {
                eprintln!("handover serve: listening on {} as instance {}", server.local_addr(), server.instance_id());
                (server, None)
            }
            Err(error @ handover_server::ServeError::Provider { .. }) => {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let signal = signals.recv().await;
    eprintln!("handover serve: {signal}: draining");
    if server.drain().await {
        eprintln!("handover serve: drained");
    } else {
        eprintln!("handover serve: drain_ms passed; peers take the rest over when the leases expire");
    }
    ExitCode::SUCCESS
}
