use std::process::ExitCode;

use clap::Parser;
use fabricsync::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Serve(args) => args.otlp(),
        _ => None,
    };
    let telemetry = match fabricsync::telemetry::init(cli.common.log_format, &cli.common.log, otlp.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("fabricsync: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match fabricsync::app::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fabricsync stopped");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown().await;
    code
}
