//! Ctrl-C for a client subcommand that has work to wind down (`send`'s turn): the first SIGINT is
//! only counted, so the command can interrupt its turn and say so before it exits 130; the second
//! exits 130 at once, whatever the command is doing. Owns the signal handler and nothing else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::EXIT_INTERRUPTED;

/// The Ctrl-C presses seen since [`CtrlC::install`].
pub struct CtrlC {
    presses: Arc<AtomicUsize>,
}

impl CtrlC {
    /// Takes over SIGINT for the rest of the process. The handler is registered before this
    /// returns, so a press right after is counted, not the default kill. If it cannot be
    /// registered, Ctrl-C keeps its default (the process ends at once) and this says so.
    pub fn install() -> CtrlC {
        let presses = Arc::new(AtomicUsize::new(0));
        if let Err(e) = listen(presses.clone()) {
            tracing::warn!(error = %e, "Ctrl-C keeps its default: it ends the command at once");
        }
        CtrlC { presses }
    }

    /// Whether Ctrl-C was pressed (once: a second press has already ended the process).
    pub fn pressed(&self) -> bool {
        self.presses.load(Ordering::SeqCst) > 0
    }
}

/// A small runtime on its own thread owns the signal stream; the command's thread stays blocking.
fn listen(presses: Arc<AtomicUsize>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut stream = rt.block_on(async { Signal::register() })?;
    std::thread::Builder::new()
        .name("zcoord-ctrl-c".into())
        .spawn(move || {
            rt.block_on(async move {
                while stream.next().await {
                    if presses.fetch_add(1, Ordering::SeqCst) >= 1 {
                        eprintln!("\ninterrupted again: exiting now");
                        std::process::exit(EXIT_INTERRUPTED);
                    }
                }
            })
        })?;
    Ok(())
}

#[cfg(unix)]
struct Signal(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Signal {
    fn register() -> std::io::Result<Signal> {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::interrupt()).map(Signal)
    }

    async fn next(&mut self) -> bool {
        self.0.recv().await.is_some()
    }
}

/// Elsewhere tokio registers Ctrl-C at the first wait, which comes a moment after `install`.
#[cfg(not(unix))]
struct Signal;

#[cfg(not(unix))]
impl Signal {
    fn register() -> std::io::Result<Signal> {
        Ok(Signal)
    }

    async fn next(&mut self) -> bool {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
