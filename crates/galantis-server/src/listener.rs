//! Accepting and serving HTTP/1 connections with the limits `axum::serve`
//! lacks: a header read timeout, an idle timeout, a cap on open connections,
//! and (with the idle timeout's length) a limit on how long a client may
//! leave its response unread, so slow or idle clients cannot hold the
//! listener's sockets.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

use crate::config::ListenerConfig;

/// The connection cap is logged at most this often, not once per client.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `stop` turns true; then stops accepting,
/// asks every connection to close once its in-flight request is answered,
/// and returns when all have closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let name = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let max = settings.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let header_timeout = Duration::from_secs(settings.header_read_timeout_secs);
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs);
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if last_cap_warning.is_none_or(|t| t.elapsed() >= CAP_WARNING_EVERY) {
                    last_cap_warning = Some(Instant::now());
                    tracing::warn!(
                        listener = %name,
                        max_connections = max,
                        "connection cap reached: new clients wait until a connection closes (GALANTIS_LISTENER__MAX_CONNECTIONS)"
                    );
                }
                let acquired = tokio::select! {
                    p = slots.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
                    _ = stop.wait_for(|s| *s) => None,
                };
                match acquired {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            Err(e) => {
                // Out of file descriptors and the like: retrying at once
                // would spin.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, header_timeout, idle_timeout, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection task holds a permit until its socket is closed.
    let _ = slots.acquire_many(max as u32).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    header_timeout: Duration,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::default());
    let stalled = WriteStall::default();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // The client's address, for handlers that pace per IP.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let guard = activity.start();
            let app = app.clone();
            async move {
                let resp = app
                    .oneshot(req.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                // The request stays in flight until its body has been sent
                // (streams such as /api/v1/events are not idle).
                Ok::<_, Infallible>(resp.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _in_flight = &guard;
                        frame
                    }))
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(StallWatch::new(stream, &stalled)), service)
        .with_upgrades();
    tokio::pin!(conn);
    let idle = activity.clone().idle_for(idle_timeout);
    tokio::pin!(idle);
    let stalled_writes = stalled.exceeds(idle_timeout);
    tokio::pin!(stalled_writes);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut idle, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // A client that stops reading its response is busy, never
            // idle: only dropping the connection frees it.
            () = &mut stalled_writes => {
                tracing::debug!("client stopped reading its response; connection dropped");
                return;
            }
        }
    }
}

/// Requests in flight on one connection, and a counter that moves whenever
/// one starts or ends (so an idle period is measured from the last end).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    changes: AtomicU64,
    ended: Notify,
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changes.fetch_add(1, Ordering::SeqCst);
        self.0.ended.notify_one();
    }
}

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(self: Arc<Self>, timeout: Duration) {
        loop {
            let seen = self.changes.load(Ordering::SeqCst);
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                self.ended.notified().await;
                continue;
            }
            tokio::time::sleep(timeout).await;
            if self.changes.load(Ordering::SeqCst) == seen
                && self.in_flight.load(Ordering::SeqCst) == 0
            {
                return;
            }
        }
    }
}

/// Since when writes to a connection have been blocked (the client's receive
/// window is full), in milliseconds after `base`; 0 when they are not.
#[derive(Clone)]
struct WriteStall {
    base: Instant,
    since_ms: Arc<AtomicU64>,
}

impl Default for WriteStall {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            since_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl WriteStall {
    fn note<T>(&self, poll: &Poll<T>) {
        if poll.is_pending() {
            let now = (self.base.elapsed().as_millis() as u64).max(1);
            let _ = self
                .since_ms
                .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        } else {
            self.since_ms.store(0, Ordering::SeqCst);
        }
    }

    /// Resolves once writes have been blocked for `limit` without a break.
    async fn exceeds(self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        let every = (limit / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            let since = self.since_ms.load(Ordering::SeqCst);
            if since != 0
                && (self.base.elapsed().as_millis() as u64).saturating_sub(since) >= limit_ms
            {
                return;
            }
        }
    }
}

/// The socket, noting when writing to it blocks.
struct StallWatch {
    inner: TcpStream,
    stall: WriteStall,
}

impl StallWatch {
    fn new(inner: TcpStream, stall: &WriteStall) -> Self {
        Self {
            inner,
            stall: stall.clone(),
        }
    }
}

impl AsyncRead for StallWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stall.note(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stall.note(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.stall.note(&poll);
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
