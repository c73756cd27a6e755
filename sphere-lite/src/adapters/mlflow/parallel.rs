//! A few blocking requests at once: the MLflow adapter's listings and record reads are each
//! mostly a round trip, so a batch of them on a handful of threads takes a few round trips'
//! time instead of one per item.

use crate::ports::StoreError;

/// Requests kept in flight at once.
const THREADS: usize = 8;

/// `f` of each of `items`, on up to [`THREADS`] threads, the results in the order of `items`;
/// an error of any (the first part's first) after all parts ended. A panicking part is an
/// error of `store` saying `what` panicked.
pub(crate) fn each_parallel<T: Sync, R: Send>(
    items: &[T],
    store: &'static str,
    what: &str,
    f: impl Fn(&T) -> Result<R, StoreError> + Sync,
) -> Result<Vec<R>, StoreError> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    let chunk = items.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<R>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for part in parts {
            out.extend(
                part.join()
                    .map_err(|_| StoreError::new(store, format!("{what} panicked")))??,
            );
        }
        Ok(out)
    })
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
}
