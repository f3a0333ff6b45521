//! The HTTP server under `wxnotify serve`'s routers: hyper's HTTP/1 connection driver with the
//! limits a public port needs, a connection limit, and a graceful shutdown.
//!
//! - **header timeout** (hyper's `header_read_timeout`): a request's headers must arrive within
//!   it, counted from the accept or, on a kept-alive connection, from the end of the previous
//!   response, so it is also the **idle keep-alive timeout**;
//! - **body timeout** (tower-http's `RequestBodyTimeoutLayer`): the gap between two pieces of a
//!   body; a dripping body ends the request with 408 and the connection with it;
//! - **request timeout** (tower-http's `TimeoutLayer`): a whole request, handler included
//!   (408);
//! - **connection limit**: at most that many connections at once; past it, new connections wait
//!   in the listen backlog until one closes (a semaphore taken before `accept`);
//! - **per-client connection limit**: one address (an IPv6 /64) holds at most that many of
//!   them; a connection past it is closed at once, so one host cannot fill the global limit
//!   and lock WeChat's pushes out (behind a reverse proxy every connection comes from the proxy:
//!   raise it or turn it off with 0);
//! - headers of at most [`MAX_HEADER_BYTES`];
//! - **graceful shutdown**: on the signal the listener closes, idle connections close, requests
//!   in flight finish within the grace period, then the rest are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The largest request head (request line and headers) read.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The limits of one listening port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a request's headers, from the accept or the previous response (so also the
    /// idle keep-alive timeout).
    pub header_timeout: Duration,
    /// Longest gap while a request body arrives.
    pub body_timeout: Duration,
    /// Longest time for a whole request, handler included.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no such limit).
    pub max_connections_per_client: usize,
    /// How long requests in flight may finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_client: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then shuts down
/// gracefully. Handlers can read the peer with `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        // Outermost, so a timed-out request is counted and logged too.
        .layer(axum::middleware::from_fn(crate::access::record));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(64);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerClient::new(limits.max_connections_per_client);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client_slot) = per_client.take(peer.ip()) else {
            tracing::debug!(peer = %peer, "too many connections from this client; closed");
            metrics::counter!("wxnotify_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection closed with an error");
            }
            drop(client_slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the grace period; closing them"
        );
    }
    Ok(())
}

/// Open connections per client address.
#[derive(Clone)]
struct PerClient {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place in [`PerClient`]; given back on drop.
struct ClientSlot {
    key: IpAddr,
    open: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
}

impl PerClient {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it holds `max` connections already.
    fn take(&self, ip: IpAddr) -> Option<ClientSlot> {
        let key = crate::edge::login_limits::client_key(ip);
        if self.max == 0 {
            return Some(ClientSlot { key, open: None });
        }
        let mut open = self.open.lock().expect("connection counts");
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            key,
            open: Some(self.open.clone()),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            let mut open = open.lock().expect("connection counts");
            if let Some(count) = open.get_mut(&self.key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_holds_at_most_its_share_and_gets_it_back() {
        let limit = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = limit.take(a).unwrap();
        let _second = limit.take(a).unwrap();
        assert!(limit.take(a).is_none());
        assert!(limit.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(limit.take(a).is_some());
        let off = PerClient::new(0);
        assert!((0..1000).all(|_| off.take(a).is_some()));
    }
}
