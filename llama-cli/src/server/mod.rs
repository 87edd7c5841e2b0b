//! `llama-cli serve`: an OpenAI-compatible HTTP server (axum on tokio) over the engine.
//!
//! - [`app`]: the router and handlers (`/v1/chat/completions`, `/v1/completions`,
//!   `/v1/models`, `/health`, `/ready`, `/metrics`); [`http`]: the connections (hyper).
//! - [`openai`]: request and response shapes, request checks; [`generation`]: the path from a
//!   checked request to the engine (chat template, grammar, tools, `n` choices) and back.
//! - [`sse`]: streamed answers; the event stream owns the engine's response stream, so a
//!   client that disconnects cancels its request.
//! - [`auth`], [`limits`]: the API key; the body size limit and read timeout (tower-http).
//! - [`metrics`], [`log`]: Prometheus text (prometheus-client); the request span (tower-http's
//!   `TraceLayer`) and one log line per request.
//! - [`error`]: OpenAI-style error bodies; [`shutdown`]: SIGINT/SIGTERM.
//! - [`state_dir`]: where the engine saves evicted sessions (by default a private temporary
//!   directory).
//! - [`router`]: without `-m`, many models under one budget, each served by the handlers
//!   above on its own state.
//!
//! The rest of the CLI is synchronous: [`serve`] builds its own multi-thread runtime.

mod anthropic;
mod app;
pub mod auth;
mod chat_path;
pub mod cors;
pub mod embeddings;
pub mod error;
mod events;
mod generation;
mod http;
mod limits;
mod log;
mod metrics;
pub mod native;
pub mod openai;
mod openapi;
mod responses;
pub mod router;
mod shutdown;
mod sse;
pub mod state;
pub mod state_dir;
mod timings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::ServeError;
pub use limits::READ_TIMEOUT;
use state::{AppState, StateParts};

/// How the HTTP side runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0: any free port), one listener each (`--host a,b`).
    pub addrs: Vec<SocketAddr>,
    /// Cross-origin settings.
    pub cors: cors::CorsConfig,
    /// The embedder of `--embeddings` (its routes exist only then).
    pub embeddings: Option<Arc<embeddings::Embeddings>>,
    /// llama-server's native routes' settings.
    pub native: native::NativeConfig,
    /// How long in-flight requests may run on after SIGINT/SIGTERM before they are cancelled.
    pub shutdown_timeout: Duration,
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully: stops accepting, lets
/// in-flight requests finish until the deadline, cancels the rest, stops the engine.
/// Prints `listening on http://ADDR` to stderr once it accepts connections.
pub fn serve(parts: StateParts, config: ServerConfig) -> Result<(), ServeError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("llama-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let state = Arc::new(AppState::new(parts));
    let result = runtime.block_on(run(Arc::clone(&state), &config));
    if let Some(engine) = state.take_engine() {
        engine.shutdown(Duration::from_secs(1));
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(state: Arc<AppState>, config: &ServerConfig) -> Result<(), ServeError> {
    let cors = config
        .cors
        .layer()
        .map_err(|e| ServeError::Serve(std::io::Error::other(e)))?;
    let listeners = http::bind_all(&config.addrs).await?;
    let observer = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            loop {
                state.budget.observe();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = app::router(
        Arc::clone(&state),
        cors,
        config.embeddings.clone(),
        config.native.clone(),
    );
    let mut server = http::serve_all(listeners, app, state.limits.read_timeout, stop_rx.clone());
    let early = tokio::select! {
        result = &mut server => Some(result),
        _ = shutdown::signal() => None,
    };
    if let Some(result) = early {
        observer.abort();
        return result
            .map_err(|e| ServeError::Serve(std::io::Error::other(e)))?
            .map_err(|e| ServeError::Serve(std::io::Error::other(e)));
    }
    let inflight = state.inflight();
    eprintln!(
        "shutting down: {inflight} request(s) in flight, waiting up to {:.1} s",
        config.shutdown_timeout.as_secs_f64()
    );
    state.begin_stopping();
    let _ = stop_tx.send(true);
    let finished = tokio::select! {
        result = tokio::time::timeout(config.shutdown_timeout, &mut server) => result.is_ok(),
        _ = shutdown::signal() => false,
    };
    if !finished {
        let n = state.cancel_all();
        eprintln!("shutdown: cancelled {n} request(s) still running");
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
    observer.abort();
    Ok(())
}
