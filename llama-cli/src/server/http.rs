//! The HTTP/1.1 connections: hyper serving the router on each accepted connection, with a
//! header read timeout, and graceful shutdown (hyper-util).
//!
//! This is what `axum::serve` does, plus the one setting it does not expose: hyper's
//! `header_read_timeout` (it needs a timer, which `axum::serve` does not give hyper). Without
//! it a client that sends half a request head holds its connection open forever; with it the
//! connection is closed after [`READ_TIMEOUT`](super::READ_TIMEOUT), which also closes
//! keep-alive connections idle that long. The body's read timeout is a tower-http layer
//! ([`super::limits`]).

use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets every
/// connection finish the request it is answering (idle ones close at once) and returns when
/// all are closed.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            // Accept errors are logged and retried by axum's `Listener` impl.
            (stream, _peer) = Listener::accept(&mut listener) => stream,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            // `Access-Control-Allow-Origin`, not `access-control-allow-origin`: as
            // llama-server writes them, for clients that compare names exactly.
            .title_case_headers(true)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(target: super::log::TARGET, "connection closed: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Binds every address of `addrs` (`--host` may name several): the listeners with the
/// addresses they got (port 0 picks one).
pub async fn bind_all(
    addrs: &[std::net::SocketAddr],
) -> Result<Vec<(TcpListener, std::net::SocketAddr)>, super::ServeError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let bind_error = |source| super::ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        listeners.push((listener, local));
    }
    Ok(listeners)
}

/// Serves `app` on every listener (as [`serve`] does on one), printing where it listens; the
/// task ends when every listener has stopped.
pub fn serve_all(
    listeners: Vec<(TcpListener, std::net::SocketAddr)>,
    app: Router,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tokio::task::JoinError>> {
    let mut servers = tokio::task::JoinSet::new();
    for (listener, local) in listeners {
        servers.spawn(serve(listener, app.clone(), header_timeout, stop.clone()));
        eprintln!("listening on http://{local}");
    }
    tokio::spawn(async move {
        while let Some(result) = servers.join_next().await {
            result?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use axum::routing::get;

    use super::*;

    /// A server with a short header timeout on a free port, and what stops it.
    async fn start(timeout: Duration) -> (u16, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // `/slow` answers over ten times the timeout: the timeout is only for reading.
        let slow = || async {
            let ticks = futures_util::stream::unfold(0, |i| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (i < 10).then(|| (Ok::<_, std::io::Error>(format!("{i} ")), i + 1))
            });
            axum::body::Body::from_stream(ticks)
        };
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/slow", get(slow));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, timeout, rx));
        (port, tx, task)
    }

    /// Writes `data` on a new connection and reads until the server closes it.
    fn exchange(port: u16, data: &[u8]) -> (String, Duration) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(data).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        // EOF, or a reset from a server that closed with unread input: both are a close.
        let _ = s.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_a_request_head_is_closed_after_the_timeout() {
        let (port, stop, task) = start(Duration::from_millis(300)).await;
        let (answer, took) = tokio::task::spawn_blocking(move || {
            exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        })
        .await
        .unwrap();
        assert!(answer.is_empty(), "{answer}");
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
        assert!(took < Duration::from_secs(20), "closed after {took:?}");
        // A whole request is answered (and the idle connection closed by the same timeout).
        let (answer, _) = tokio::task::spawn_blocking(move || {
            exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        // A response that takes longer than the timeout is not cut.
        let (answer, _) = tokio::task::spawn_blocking(move || {
            exchange(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("9 \r\n"), "{answer}");
        assert!(answer.contains("\r\n0\r\n\r\n"), "not finished: {answer}");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}
