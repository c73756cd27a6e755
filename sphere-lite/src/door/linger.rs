//! A request body that is read to its end (within bounds) after the route dropped it unread,
//! so the client can read the answer.
//!
//! Why: many answers are decided from a request's head alone (a bad token: 401, a foreign
//! `Origin`: 403, a declared length over the cap: 413). hyper then closes the connection with
//! the rest of the body unread, the kernel answers the bytes still arriving with a reset, and a
//! client that sends its whole body before reading (ureq, curl, a device's uploader) sees a
//! broken pipe or a reset instead of the status and its fix: a revoked device retries an
//! "unreachable" server rather than saying its token was refused. Reading and discarding the
//! rest, as web servers' lingering close does, lets the answer through and keeps the
//! connection usable. Bounded in time ([`LINGER_TIME`]) and bytes ([`LINGER_BYTES`]), so a
//! refused client holds its connection no longer than that.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Longest a dropped body is read after its route let go of it.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes of a dropped body read and discarded (the default upload cap).
pub const LINGER_BYTES: u64 = 64 << 20;

/// hyper's request body, drained when dropped before its end (see the module docs).
pub struct LingeringBody {
    inner: Option<Incoming>,
}

impl LingeringBody {
    /// `inner`, drained on drop.
    pub fn new(inner: Incoming) -> Self {
        LingeringBody { inner: Some(inner) }
    }
}

impl Body for LingeringBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime (never in the server): nothing to drain with.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, LINGER_TIME, LINGER_BYTES));
        }
    }
}

/// Read and discard `body` until its end, an error, `max_bytes` or `max_time`, whichever is
/// first; the bytes read.
async fn drain<B: Body + Unpin>(mut body: B, max_time: Duration, max_bytes: u64) -> u64 {
    let mut read = 0u64;
    let _ = tokio::time::timeout(max_time, async {
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Some(data) = frame.data_ref() {
                read += bytes::Buf::remaining(data) as u64;
            }
            if read >= max_bytes {
                break;
            }
        }
    })
    .await;
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::body::tests::Fed;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_drain_stops_at_the_end_the_byte_bound_or_the_time_bound() {
        let (tx, rx) = mpsc::unbounded_channel();
        for _ in 0..3 {
            tx.send(bytes::Bytes::from_static(b"0123456789")).unwrap();
        }
        drop(tx);
        assert_eq!(drain(Fed(rx), LINGER_TIME, LINGER_BYTES).await, 30);

        let (tx, rx) = mpsc::unbounded_channel();
        for _ in 0..10 {
            tx.send(bytes::Bytes::from_static(b"0123456789")).unwrap();
        }
        assert_eq!(
            drain(Fed(rx), LINGER_TIME, 25).await,
            30,
            "stops past the bound"
        );

        // A client that stops sending: let go at the time bound.
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(bytes::Bytes::from_static(b"abc")).unwrap();
        let read = drain(Fed(rx), Duration::from_millis(50), LINGER_BYTES).await;
        assert_eq!(read, 3);
        drop(tx);
    }
}
