//! SIGTERM or SIGINT cancels the run token (drain and exit 0); a second signal exits at once, as
//! does a signal while the process stops for another reason (a fatal error).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit code for a second, impatient signal (128 + SIGINT, as shells report it).
const FORCED_EXIT: i32 = 130;

/// Watches for stop signals in the background.
pub fn install(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let signalled = tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => true,
            // Stopping for another reason (a fatal error): a signal meanwhile still exits.
            _ = token.cancelled() => false,
        };
        if signalled {
            tracing::info!(
                "Stop signal received: draining buffered records; a second signal exits at once."
            );
        }
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("Second stop signal: exiting without draining.");
        std::process::exit(FORCED_EXIT);
    });
    Ok(())
}
