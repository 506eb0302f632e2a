//! Panics as log lines. The default hook writes the panic's message straight to stderr, past
//! the masking every log line gets; a message that quotes a request (an `expect` on user
//! input, a formatted payload) could carry a key or an e-mail address there. This hook logs
//! the panic as an `error` line instead, so it is masked, formatted (JSON under
//! `LOG_FORMAT=json`) and collected like any other.

use std::panic::PanicHookInfo;

/// Replaces the process's panic hook with one that logs through `tracing`.
pub fn install() {
    std::panic::set_hook(Box::new(log_panic));
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)");
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let thread = std::thread::current();
    tracing::error!(
        target: "panic",
        panic = message,
        location = %location,
        thread = thread.name().unwrap_or("unnamed"),
        "panicked"
    );
}
