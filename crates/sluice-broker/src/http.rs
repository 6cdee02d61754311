//! The HTTP port: `/health`, `/metrics` (Prometheus), and `/failpoints/NAME` for the fault
//! tests; the dashboard comes later.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use sluice_storage::CrashPointError;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tasks::Task;

pub struct HttpServer {
    pub node: Arc<Node>,
    pub listener: tokio::net::TcpListener,
}

impl Task for HttpServer {
    const NAME: &'static str = "http";

    async fn run(self, shutdown: CancellationToken) {
        let app = axum::Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/failpoints/{name}", put(arm_failpoint))
            .with_state(self.node);
        if let Err(e) =
            axum::serve(self.listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }
}

async fn health(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    let groups = node.partition_groups();
    Json(serde_json::json!({
        "status": "ok",
        "node_id": node.id(),
        "meta_leader": node.registry().leader(),
        "registry_index": node.registry().snapshot().index,
        "partition_groups": groups.len(),
        "hibernating_groups": groups.iter().filter(|g| g.is_hibernating()).count(),
        "uptime_ms": u64::try_from(node.uptime().as_millis()).unwrap_or(u64::MAX),
    }))
}

async fn metrics(
    State(node): State<Arc<Node>>,
) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    let content_type = axum::http::header::CONTENT_TYPE;
    match crate::exposition::render(&node) {
        Ok(text) => (StatusCode::OK, [(content_type, crate::exposition::CONTENT_TYPE)], text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(content_type, "text/plain")], e.to_string()),
    }
}

/// `PUT /failpoints/NAME` with a `fail` action as the body arms a crash point (fault tests only:
/// nodes built without the `failpoints` feature answer 501 and change nothing).
async fn arm_failpoint(Path(name): Path<String>, action: String) -> (StatusCode, String) {
    match sluice_storage::arm_crash_point(&name, action.trim()) {
        Ok(()) => {
            tracing::warn!(%name, action = action.trim(), "crash point armed");
            (StatusCode::OK, format!("{name}={}\n", action.trim()))
        }
        Err(e @ CrashPointError::NotBuilt) => (StatusCode::NOT_IMPLEMENTED, e.to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}
