//! A request body with a deadline: past it, the next read fails and the request is marked so
//! the door answers 408 instead of whatever the route made of the failed read.
//!
//! Why: hyper bounds the time to send a request's head but not its body, so a client trickling
//! a body one byte at a time would hold a connection, a task and an upload slot for as long as
//! it likes. The deadline runs from the head to the body's last byte. The route sees a failed
//! body read, exactly as for a client that disconnects mid-upload, so nothing is stored.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a read past the deadline returns.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the server's request_body_timeout")]
pub struct BodyTimedOut;

/// `B` with a deadline (see the module docs).
pub struct DeadlineBody<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, whose reads fail once `deadline` has passed; `timed_out` is then set.
    pub fn new(inner: B, deadline: Instant, timed_out: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timed_out,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        // What has arrived is read first: the deadline only decides while waiting for more.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A body fed through a channel: pending while nothing was sent and the sender lives.
    pub(in crate::door) struct Fed(pub(in crate::door) mpsc::UnboundedReceiver<bytes::Bytes>);

    impl Body for Fed {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_its_deadline_fails_and_says_so() {
        let (tx, rx) = mpsc::unbounded_channel();
        let flag = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut body = DeadlineBody::new(Fed(rx), deadline, flag.clone());
        tx.send(bytes::Bytes::from_static(b"abc")).unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), &b"abc"[..]);
        assert!(!flag.load(Ordering::Acquire));
        // Nothing more arrives: the read fails at the deadline.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert!(flag.load(Ordering::Acquire));
        drop(tx);
    }

    #[tokio::test]
    async fn a_complete_body_is_untouched() {
        let flag = Arc::new(AtomicBool::new(false));
        let inner = http_body_util::Full::new(bytes::Bytes::from_static(b"whole"));
        let body = DeadlineBody::new(inner, Instant::now(), flag.clone());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"whole");
        assert!(!flag.load(Ordering::Acquire));
    }
}
