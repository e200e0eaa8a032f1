//! `sstp-gateway`: the SSTP server (standalone or configured by the operator) and the users
//! file tool. See `cli.rs` for the command line.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_tracing(&args.log, args.log_format);
    raise_open_file_limit();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `filter` is an env-filter directive such as `info` or `sstp_gateway=debug`.
fn init_tracing(filter: &str, format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal; pods and log collectors get plain text.
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level, as log collectors index them; the span list says which
        // session or connection a line belongs to.
        cli::LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Every connection is a socket: the usual soft limit of 1024 descriptors is below
/// `maxSessions` + `maxPendingConnections` with the defaults, so take what the hard limit
/// allows (as nginx and HAProxy do).
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %err, soft, "cannot raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read the open-file limit"),
    }
}
