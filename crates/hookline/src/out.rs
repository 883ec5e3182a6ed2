//! What the binary prints. Rust ignores SIGPIPE, so `println!` panics once a
//! reader such as `head` has gone; these never panic.

use std::io::Write;

use anyhow::Context;

/// `text` and a newline on stdout, for output that matters (a key shown
/// once): a closed stdout is an error, since it reached no one.
pub fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// `text` on stdout for whoever is watching; dropped if stdout is gone.
pub fn show(text: &str) {
    let _ = stdout(text);
}

/// A line for the person at the terminal, on stderr; dropped if stderr is gone.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
