//! OS signals as typed events, from one place. Every command that must react to Ctrl-C,
//! SIGTERM or a hangup takes a [`Signals`] and decides what each event means for it; no
//! command installs handlers of its own.
//!
//! Handlers are installed on a thread of their own with a tiny runtime, and [`Signals::install`]
//! returns only once they are in place, so a signal that arrives right after is never left to
//! its default action (death without cleanup).

use tokio::sync::mpsc;

/// A signal troupe reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
}

impl SignalEvent {
    /// How the event reads in a message.
    pub fn name(self) -> &'static str {
        match self {
            SignalEvent::Interrupt => "interrupted",
            SignalEvent::Terminate => "SIGTERM",
            SignalEvent::Hangup => "SIGHUP",
        }
    }
}

/// The stream of signal events.
pub struct Signals {
    rx: mpsc::UnboundedReceiver<SignalEvent>,
}

impl Signals {
    /// Starts listening for SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> Signals {
        let (tx, rx) = mpsc::unbounded_channel();
        let (installed, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    let _ = installed.send(false);
                    return;
                };
                rt.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                        signal(SignalKind::hangup()),
                    ) else {
                        let _ = installed.send(false);
                        return;
                    };
                    let _ = installed.send(true);
                    loop {
                        let event = tokio::select! {
                            _ = int.recv() => SignalEvent::Interrupt,
                            _ = term.recv() => SignalEvent::Terminate,
                            _ = hup.recv() => SignalEvent::Hangup,
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                });
            });
        if spawned.is_ok() && !wait.recv().unwrap_or(false) {
            eprintln!(
                "troupe: warning: cannot listen for signals; Ctrl-C will not stop nodes gracefully"
            );
        }
        Signals { rx }
    }

    /// The next event (never returns if signals could not be installed).
    pub async fn recv(&mut self) -> SignalEvent {
        match self.rx.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// Calls `action` for every event, on a thread of its own: for commands whose main thread
    /// is busy waiting.
    pub fn on_each(mut self, action: impl Fn(SignalEvent) + Send + 'static) {
        let _ = std::thread::Builder::new()
            .name("signal-actions".into())
            .spawn(move || {
                while let Some(e) = self.rx.blocking_recv() {
                    action(e);
                }
            });
    }
}
