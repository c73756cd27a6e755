//! The one accept loop of `serve`, for plain HTTP and native TLS alike: a slot per connection,
//! hyper's HTTP/1.1 connection with its header-read timer, every request through the
//! [`Door`], graceful shutdown.
//!
//! Why it replaces warp's loop: warp 0.4 builds hyper's connection itself, without a timer (so
//! no header-read timeout) and without a bound on connections, and offers no hook for either.
//! Its loop is small (accept, wrap the routes' tower service, serve with hyper-util's auto
//! builder, stop through hyper-util's graceful shutdown); this is that loop with the limits
//! added and TLS as one optional step after accept.
//!
//! Decisions:
//!
//! * HTTP/1.1 only, on both listeners: TLS offers only `http/1.1` in ALPN (see [`crate::tls`])
//!   and prior-knowledge HTTP/2 on the plain listener would bypass the header timer, which is an
//!   HTTP/1 setting. Devices, the original clients and browsers all speak HTTP/1.1.
//! * The slot is taken before `accept`, so over the cap connections wait in the listen backlog
//!   (bounded by the kernel) instead of costing a descriptor each; see [`crate::door`].
//! * The cap is lowered to what the open-files limit leaves after [`RESERVED_FILES`], with a
//!   warning, so the cap, not `EMFILE`, is what a flood meets.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::{Filter, Reply};

use super::linger::LingeringBody;
use super::{Connection, Door, DoorSettings};
use crate::tls::ServerTls;

/// File descriptors kept for the stores, blobs and logs when the cap is fitted to the
/// open-files limit.
pub const RESERVED_FILES: u64 = 64;

/// Serve `routes` on `listener` (over TLS when `tls` is given) under `settings` until
/// `shutdown` resolves; then stop accepting and let open connections finish their in-flight
/// requests.
pub async fn serve<F, R>(
    routes: F,
    listener: TcpListener,
    tls: Option<ServerTls>,
    settings: &DoorSettings,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let door = Arc::new(Door::new(settings));
    let slots = Arc::new(Semaphore::new(fit_to_open_files(settings.max_connections)));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut saturated = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                saturated = false;
                slot
            }
            Err(_) => {
                if !saturated {
                    saturated = true;
                    tracing::warn!(
                        max_connections = settings.max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let local = tcp
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // Taken before a TLS handshake, so shutdown waits for one in progress (bounded by the
        // handshake timeout) and then ends its connection gracefully.
        let watcher = graceful.watcher();
        let routes = routes.clone();
        let door = door.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = Connection {
                peer,
                local,
                tls: tls.is_some(),
            };
            let served = match tls {
                None => serve_one(&builder, TokioIo::new(tcp), routes, door, conn, watcher).await,
                Some(tls) => {
                    let Some(stream) = tls.handshake(tcp, peer).await else {
                        return;
                    };
                    serve_one(&builder, TokioIo::new(stream), routes, door, conn, watcher).await
                }
            };
            if let Err(e) = served {
                // Timeouts and clients that go away end here too: not the server's problem.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One connection: hyper's HTTP/1.1 with every request through the door.
async fn serve_one<I, F, R>(
    builder: &auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    routes: F,
    door: Arc<Door>,
    conn: Connection,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let routes = TowerToHyperService::new(warp::service(routes));
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let door = door.clone();
        let routes = routes.clone();
        let request = request.map(LingeringBody::new);
        async move { Ok::<_, Infallible>(door.handle(request, conn, routes).await) }
    });
    watcher.watch(builder.serve_connection(io, service)).await
}

/// The cap `wanted`, lowered to what the open-files limit leaves after [`RESERVED_FILES`].
fn fit_to_open_files(wanted: usize) -> usize {
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    else {
        return wanted;
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(wanted);
    if wanted > room {
        tracing::warn!(
            max_connections = wanted,
            open_files = soft,
            using = room,
            "max_connections is above what the open-files limit allows: lowered"
        );
        return room;
    }
    wanted
}

/// As warp's loop does: errors of one connection are ignored; others (such as running out of
/// file descriptors) are logged and the loop pauses a second before accepting again.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}
