//! `hookline`: parses the command line and calls the library's [`hookline::run`].

use std::process::ExitCode;

use hookline::{cli, out};

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse_from(cli::command_line()) {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    cli::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hookline: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hookline::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say(&one_line(&format!("{err:#}")));
            // What the user asked for is wrong (a flag, a variable, a
            // config file): 2, as for clap's own usage errors.
            if err.chain().any(|cause| cause.is::<hookline::UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `hookline: {line}` on stderr; nothing, not a panic, if stderr is gone.
fn say(line: &str) {
    out::note(&format!("hookline: {line}"));
}

/// Every line of `text`, trimmed, joined by spaces.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Help and version print as clap formats them; a usage error becomes one
/// line on stderr, like every other error, and exit code 2.
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return ExitCode::from(2);
    }
    // clap's message runs over several lines (a missing argument's name is
    // on the second), then a usage block and a tip: keep the message, whole.
    let rendered = err.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("tip:"))
        .filter(|line| !line.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let message = if message.is_empty() {
        "invalid arguments"
    } else {
        message
    };
    say(&format!("{message} (see hookline --help)"));
    ExitCode::from(2)
}
