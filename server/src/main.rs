use std::process::ExitCode;

use clap::Parser;
use fabricsync::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = fabricsync::telemetry::init(cli.common.log_format, &cli.common.log) {
        eprintln!("fabricsync: {e:#}");
        return ExitCode::from(2);
    }
    match fabricsync::app::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fabricsync stopped");
            ExitCode::FAILURE
        }
    }
}
