//! The accept loop: each connection served by hyper's HTTP/1 with a header-read timeout
//! (a half-sent request, or a connection idle between requests, is closed after it), and a
//! graceful shutdown that lets in-flight requests finish.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tower_service::Service;

/// llama-server's answer while the model loads.
fn loading() -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"error": {
            "code": 503, "message": "Loading model", "type": "unavailable_error"}})),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for open connections;
/// until `app` is set (the model loads), every request gets 503 "Loading model".
/// `header_timeout` bounds how long a connection may take to send a request's headers,
/// including the wait for the next request on a kept-alive connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<OnceLock<Router>>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    log::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let router = app.get().cloned();
            async move {
                match router {
                    Some(mut r) => r.call(req).await,
                    None => Ok(loading()),
                }
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                log::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
