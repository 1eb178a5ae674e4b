//! The daemon's HTTP endpoint (`[metrics] listen`):
//!
//! - `GET /metrics`: Prometheus text format, every `drc_*` metric of the
//!   roles in this process (see the README's metrics table);
//! - `GET /healthz`: 200 while the process serves requests;
//! - `GET /readyz`: 200 when every part (relay listener, capture, upstream
//!   replication, apply pipeline) is doing its job, else 503; the body lists
//!   each part with `ok` or why not.
//!
//! Plain HTTP/1.1 without TLS: bind it to loopback or a private interface.

use std::net::SocketAddr;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

/// Installs the Prometheus recorder (once per process) and returns its
/// handle. Metrics recorded before this are lost; call it first.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .context("install the metrics recorder")
}

/// `/readyz`'s answer: the status and the body.
pub fn readiness() -> (StatusCode, String) {
    let parts = drc_obs::health::snapshot();
    let mut body = String::new();
    let mut ready = true;
    for (name, why) in &parts {
        match why {
            None => body.push_str(&format!("ok       {name}\n")),
            Some(why) => {
                ready = false;
                body.push_str(&format!("not ok   {name}: {why}\n"));
            }
        }
    }
    if ready {
        (StatusCode::OK, format!("ready\n{body}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{body}"),
        )
    }
}

/// Binds `listen`, then serves until `stop` turns true.
pub async fn serve(
    listen: SocketAddr,
    handle: PrometheusHandle,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("bind the metrics endpoint on {listen} ([metrics] listen): is another process using the port?")
    })?;
    tracing::info!(listen = %listen, "metrics, healthz and readyz listening");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    drc_obs::lag::refresh();
                    handle.run_upkeep();
                    handle.render()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { readiness() }));
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    }))
}
