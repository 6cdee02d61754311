//! The HTTP port: `/health`, and `/failpoints/NAME` for the fault tests; metrics and the
//! dashboard come later.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};

use crate::node::Node;

pub async fn serve_http(node: Arc<Node>, listener: tokio::net::TcpListener) {
    let app = axum::Router::new()
        .route("/health", get(health))
        .route("/failpoints/{name}", put(arm_failpoint))
        .with_state(node.clone());
    let shutdown = node.shutdown.clone();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn health(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    let registry = node.registry();
    Json(serde_json::json!({
        "status": "ok",
        "node_id": node.id,
        "meta_leader": node.meta_leader(),
        "registry_index": registry.index,
        "partition_groups": node.partition_groups().len(),
        "hibernating_groups": node.partition_groups().iter().filter(|g| g.is_hibernating()).count(),
        "uptime_ms": u64::try_from(node.started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// `PUT /failpoints/NAME` with a `fail` action as the body arms a crash point (fault tests only:
/// nodes built without the `failpoints` feature answer 501 and change nothing).
async fn arm_failpoint(Path(name): Path<String>, action: String) -> (StatusCode, String) {
    match sluice_storage::arm_crash_point(&name, action.trim()) {
        Ok(()) => {
            tracing::warn!(%name, action = action.trim(), "crash point armed");
            (StatusCode::OK, format!("{name}={}\n", action.trim()))
        }
        Err(e) if e.contains("without the failpoints feature") => (StatusCode::NOT_IMPLEMENTED, e),
        Err(e) => (StatusCode::BAD_REQUEST, e),
    }
}
