//! Capture on its own thread, so decoding the next frame overlaps inference.
//!
//! Frames circulate between the capture thread and the inference loop through
//! two bounded channels: full frames one way, emptied buffers back. After the
//! first `depth` frames no buffer is ever allocated again, and a slow model
//! makes capture wait rather than queue without bound.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::frame::{Frame, FrameError, FrameSource};

/// What the capture thread hands over.
#[derive(Debug)]
pub enum Captured {
    /// A frame and how long the source took to produce it.
    Frame(Frame, Duration),
    /// A finite source has no more frames.
    End,
    /// The source failed; capture has stopped.
    Failed(FrameError),
}

/// A running capture thread, scoped so that it can borrow its source.
pub struct CaptureThread<'scope> {
    frames: Option<Receiver<Captured>>,
    recycle: Option<SyncSender<Frame>>,
    handle: Option<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> CaptureThread<'scope> {
    /// Start capturing from `source` on a thread of `scope`, keeping at most `depth` frames in flight.
    pub fn spawn<'env>(
        scope: &'scope Scope<'scope, 'env>,
        source: &'env mut dyn FrameSource,
        depth: usize,
    ) -> std::io::Result<Self> {
        let depth = depth.max(1);
        let (frame_tx, frame_rx) = sync_channel::<Captured>(depth);
        let (recycle_tx, recycle_rx) = sync_channel::<Frame>(depth);
        let handle = std::thread::Builder::new()
            .name("capture".into())
            .spawn_scoped(scope, move || {
                let mut allocated = 0;
                loop {
                    let mut frame = match recycle_rx.try_recv() {
                        Ok(frame) => frame,
                        Err(TryRecvError::Empty) if allocated < depth => {
                            allocated += 1;
                            Frame::default()
                        }
                        Err(TryRecvError::Empty) => match recycle_rx.recv() {
                            Ok(frame) => frame,
                            Err(_) => return,
                        },
                        Err(TryRecvError::Disconnected) => return,
                    };
                    let start = Instant::now();
                    let message = match source.next_frame(&mut frame) {
                        Ok(true) => Captured::Frame(frame, start.elapsed()),
                        Ok(false) => Captured::End,
                        Err(e) => Captured::Failed(e),
                    };
                    let last = !matches!(message, Captured::Frame(..));
                    if frame_tx.send(message).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(CaptureThread {
            frames: Some(frame_rx),
            recycle: Some(recycle_tx),
            handle: Some(handle),
        })
    }

    /// Wait for the next frame (or the end, or a failure).
    pub fn next(&self) -> Captured {
        match self.frames.as_ref().map(Receiver::recv) {
            Some(Ok(captured)) => captured,
            // The thread only hangs up after sending End or Failed, so this is a panic in the source.
            _ => Captured::Failed(FrameError::Disconnected {
                what: "capture thread".into(),
                reason: "stopped unexpectedly".into(),
            }),
        }
    }

    /// Give a processed frame's buffer back for reuse.
    pub fn recycle(&self, frame: Frame) {
        if let Some(tx) = &self.recycle {
            // The thread may have ended; then the buffer is simply dropped.
            let _ = tx.try_send(frame);
        }
    }
}

impl Drop for CaptureThread<'_> {
    fn drop(&mut self) {
        // Hanging up both channels unblocks the thread wherever it waits.
        self.frames.take();
        self.recycle.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts frames; fails or ends after a given number.
    struct Counting {
        produced: u64,
        limit: u64,
        fail: bool,
    }

    impl FrameSource for Counting {
        fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError> {
            if self.produced == self.limit {
                return if self.fail {
                    Err(FrameError::Disconnected {
                        what: "test".into(),
                        reason: "unplugged".into(),
                    })
                } else {
                    Ok(false)
                };
            }
            frame.reshape(4, 2);
            frame.sequence = self.produced;
            self.produced += 1;
            Ok(true)
        }

        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn drain(capture: &CaptureThread<'_>) -> (Vec<u64>, Captured) {
        let mut seen = Vec::new();
        loop {
            match capture.next() {
                Captured::Frame(frame, _) => {
                    seen.push(frame.sequence);
                    capture.recycle(frame);
                }
                other => return (seen, other),
            }
        }
    }

    #[test]
    fn delivers_every_frame_in_order_then_the_end() {
        let mut source = Counting {
            produced: 0,
            limit: 50,
            fail: false,
        };
        std::thread::scope(|scope| {
            let capture = CaptureThread::spawn(scope, &mut source, 2).unwrap();
            let (seen, last) = drain(&capture);
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
            assert!(matches!(last, Captured::End));
        });
    }

    #[test]
    fn reports_a_source_failure() {
        let mut source = Counting {
            produced: 0,
            limit: 3,
            fail: true,
        };
        std::thread::scope(|scope| {
            let capture = CaptureThread::spawn(scope, &mut source, 2).unwrap();
            let (seen, last) = drain(&capture);
            assert_eq!(seen.len(), 3);
            assert!(matches!(
                last,
                Captured::Failed(FrameError::Disconnected { .. })
            ));
        });
    }

    #[test]
    fn dropping_mid_stream_stops_the_thread() {
        let mut source = Counting {
            produced: 0,
            limit: u64::MAX,
            fail: false,
        };
        std::thread::scope(|scope| {
            let capture = CaptureThread::spawn(scope, &mut source, 3).unwrap();
            let Captured::Frame(frame, _) = capture.next() else {
                panic!("expected a frame")
            };
            assert_eq!(frame.sequence, 0);
            drop(capture);
        });
        // Reaching this line means the scope could join the capture thread.
        assert!(source.produced >= 1);
    }
}
