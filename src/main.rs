//! The `entitlement-gateway` binary: parses the command line and hands over to the
//! library.

use std::{io::Write as _, process::ExitCode, time::Duration};

use clap::Parser as _;
use entitlement_gateway::{
    Listeners,
    auth::SigningKey,
    config::{Cli, Command},
    ops::{shutdown, telemetry},
    run,
};

/// jemalloc: the request path allocates small, short-lived buffers on several
/// threads, which glibc's allocator serves with more CPU; it also serves C's malloc,
/// so the bundled SQLite's allocations go to it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let result = match Cli::parse().command() {
        Command::Serve(config) => serve_until_stopped(*config),
        Command::Token(args) => token(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "entitlement-gateway",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_until_stopped(config: entitlement_gateway::config::ServeArgs) -> anyhow::Result<()> {
    // Before the runtime: the OTLP exporter's client must not live inside it. Its
    // guard outlives the runtime, so the last log lines and spans are flushed.
    let _telemetry = telemetry::init(
        config.log_format,
        config.access_log,
        config.otlp_endpoint.as_deref(),
    )?;
    tokio::runtime::Runtime::new()?.block_on(serve(config))
}

async fn serve(config: entitlement_gateway::config::ServeArgs) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    run(config, listeners, shutdown::signal()).await
}

fn token(args: &entitlement_gateway::config::TokenArgs) -> anyhow::Result<()> {
    let key = SigningKey::load_or_create(&args.data_dir)?;
    let token = key.issue(&args.subject, &args.scopes, Duration::from_secs(args.ttl))?;
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}
