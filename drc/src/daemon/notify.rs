//! systemd integration for `Type=notify` units: `READY=1` once every role
//! has started, a `STATUS=` line with the readiness summary, `WATCHDOG=1`
//! at half the unit's `WatchdogSec` from a task of the async runtime (so a
//! wedged runtime stops the pings and systemd restarts the daemon), and
//! `STOPPING=1` at shutdown. Outside systemd (no `NOTIFY_SOCKET`) every call
//! does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

/// Sends `states`; a failure is only logged (the daemon runs on without).
fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// One line for `systemctl status`: how many parts are ready, and the first
/// that is not.
fn status_line() -> String {
    let parts = drc_obs::health::snapshot();
    let ready = parts.iter().filter(|(_, why)| why.is_none()).count();
    match parts
        .iter()
        .find_map(|(name, why)| why.as_ref().map(|w| (name, w)))
    {
        None => format!("{ready}/{} parts ready", parts.len()),
        Some((name, why)) => {
            // By characters: a byte cut could split one.
            let why: String = why.chars().take(160).collect();
            format!("{ready}/{} parts ready; {name}: {why}", parts.len())
        }
    }
}

/// Every role has started: tells systemd, and starts the watchdog and
/// status task (it ends when `stop` turns true).
pub fn ready(mut stop: watch::Receiver<bool>) {
    let status = status_line();
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    let every = if watchdog {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(5)
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let status = status_line();
            if watchdog {
                send(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            } else {
                send(&[NotifyState::Status(&status)]);
            }
        }
    });
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
