//! A few blocking calls at once: listings, record reads and a batch's package unpacking on
//! MLflow + S3 are each mostly round trips, so a batch of them on a handful of threads takes a
//! few round trips' time instead of one per item.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ports::StoreError;

/// Calls kept in flight at once.
pub(crate) const THREADS: usize = 8;

/// A call of [`map`] panicked (after every other call ended).
#[derive(Debug)]
pub(crate) struct Panicked;

/// `f` of each of `items`, on up to [`THREADS`] threads, the results in the order of `items`.
/// Each thread takes the next item not taken yet, so one slow item holds up only its own
/// thread.
pub(crate) fn map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<R>, Panicked> {
    if items.len() <= 1 {
        return Ok(items.iter().map(&f).collect());
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let worker = || {
        loop {
            let at = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(at) else { break };
            let result = f(item);
            *slots[at]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        }
    };
    let all_joined = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS.min(items.len()))
            .map(|_| s.spawn(worker))
            .collect();
        threads.into_iter().all(|t| t.join().is_ok())
    });
    if !all_joined {
        return Err(Panicked);
    }
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .ok_or(Panicked)
        })
        .collect()
}

/// [`map`] of a store's fallible calls: the results in the order of `items`, or the first
/// item's error after all calls ended. A panicking call is an error of `store` saying `what`
/// panicked.
pub(crate) fn each_parallel<T: Sync, R: Send>(
    items: &[T],
    store: &'static str,
    what: &str,
    f: impl Fn(&T) -> Result<R, StoreError> + Sync,
) -> Result<Vec<R>, StoreError> {
    map(items, f)
        .map_err(|Panicked| StoreError::new(store, format!("{what} panicked")))?
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items_and_an_error_is_returned() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = each_parallel(&items, "test", "doubling", |n| Ok(n * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let failed = each_parallel(&items, "test", "doubling", |n| {
            if *n == 57 {
                Err(StoreError::new("test", "57"))
            } else {
                Ok(*n)
            }
        });
        assert!(failed.is_err());
        assert!(
            each_parallel(&[] as &[u32], "test", "nothing", |n| Ok(*n))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn calls_run_at_once_and_a_panic_is_an_error() {
        // Eight calls that each wait for all eight to have started end only if they run at once.
        let started = std::sync::Barrier::new(THREADS);
        let items: Vec<usize> = (0..THREADS).collect();
        let waited = map(&items, |n| {
            started.wait();
            *n
        })
        .unwrap();
        assert_eq!(waited, items);
        let panicked = map(&items, |n| {
            assert!(*n != 3, "call 3 fails");
            *n
        });
        assert!(panicked.is_err());
    }
}
