//! Group commit: callers that need the same kind of durable write at the same moment share one.
//!
//! Why: making an accepted upload durable costs a disk flush (an fsync of its raw TAR and a
//! durable database commit), and a flush costs about the same for one upload as for thirty.
//! Concurrent uploads therefore hand their item to a [`GroupCommit`] and wait: the first caller
//! to find no commit running becomes the leader, takes every item queued so far (its own
//! included), runs the commit for all of them at once and hands each caller its own outcome;
//! those that arrived meanwhile form the next group. Nobody is answered before the commit that
//! holds its item has returned, so an answer still means "durable".

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::ports::StoreError;

/// What waits in the queue, and the outcomes not collected yet.
struct State<T, R> {
    queue: Vec<(u64, T)>,
    next_ticket: u64,
    leading: bool,
    outcomes: HashMap<u64, Result<R, StoreError>>,
}

/// A queue of items committed in groups (see the module documentation).
pub(crate) struct GroupCommit<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
}

impl<T, R> Default for GroupCommit<T, R> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_ticket: 0,
                leading: false,
                outcomes: HashMap::new(),
            }),
            done: Condvar::new(),
        }
    }
}

impl<T, R> GroupCommit<T, R> {
    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `item` and wait until a commit that holds it has returned; its outcome.
    /// `commit` gets a group of items (in arrival order) and returns one outcome per item,
    /// in the same order, or one error for all of them.
    pub(crate) fn submit(
        &self,
        item: T,
        commit: impl Fn(Vec<T>) -> Result<Vec<R>, StoreError>,
    ) -> Result<R, StoreError> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, item));
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.leading {
                state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.leading = true;
            let (tickets, items): (Vec<u64>, Vec<T>) =
                std::mem::take(&mut state.queue).into_iter().unzip();
            drop(state);
            // Whatever happens in `commit` (a panic included), the group gets its outcomes and
            // the next leader can start.
            let mut lead = Lead {
                group: self,
                tickets,
                outcomes: None,
            };
            lead.outcomes = Some(commit(items));
            drop(lead);
            state = self.lock();
        }
    }
}

/// The leader's group while its commit runs; hands out the outcomes when dropped.
struct Lead<'a, T, R> {
    group: &'a GroupCommit<T, R>,
    tickets: Vec<u64>,
    outcomes: Option<Result<Vec<R>, StoreError>>,
}

impl<T, R> Drop for Lead<'_, T, R> {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        let outcomes = match self.outcomes.take() {
            Some(Ok(outcomes)) if outcomes.len() == self.tickets.len() => outcomes
                .into_iter()
                .map(Ok)
                .collect::<Vec<Result<R, StoreError>>>(),
            Some(Ok(outcomes)) => failed(
                self.tickets.len(),
                &format!(
                    "a group commit of {} items returned {} outcomes",
                    self.tickets.len(),
                    outcomes.len()
                ),
            ),
            Some(Err(e)) => failed(self.tickets.len(), &e.to_string()),
            None => failed(self.tickets.len(), "the group commit panicked"),
        };
        for (ticket, outcome) in self.tickets.drain(..).zip(outcomes) {
            state.outcomes.insert(ticket, outcome);
        }
        state.leading = false;
        drop(state);
        self.group.done.notify_all();
    }
}

/// `n` copies of the error `message` (a store error is not `Clone`).
fn failed<R>(n: usize, message: &str) -> Vec<Result<R, StoreError>> {
    (0..n)
        .map(|_| Err(StoreError::new("commit", message)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn concurrent_callers_share_commits_and_each_gets_its_own_outcome() {
        let group = Arc::new(GroupCommit::<usize, usize>::default());
        let commits = Arc::new(AtomicUsize::new(0));
        let threads = 16;
        let start = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (group, commits, start) = (group.clone(), commits.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (0..50)
                        .map(|j| {
                            let item = i * 1000 + j;
                            let out = group.submit(item, |items| {
                                commits.fetch_add(1, Ordering::SeqCst);
                                // Long enough for the others to queue behind this commit.
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                Ok(items.iter().map(|x| x * 2).collect())
                            });
                            assert_eq!(out.unwrap(), item * 2);
                        })
                        .count()
                })
            })
            .collect();
        let done: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(done, threads * 50);
        let commits = commits.load(Ordering::SeqCst);
        assert!(
            commits < done,
            "{commits} commits for {done} items: nothing was grouped"
        );
    }

    #[test]
    fn a_failed_or_panicking_commit_fails_its_group_and_the_next_one_runs() {
        let group = GroupCommit::<u8, u8>::default();
        let e = group
            .submit(1, |_| Err(StoreError::new("test", "disk gone")))
            .unwrap_err();
        assert!(e.to_string().contains("disk gone"), "{e}");
        let wrong = group.submit(1, |_| Ok(vec![])).unwrap_err();
        assert!(wrong.to_string().contains("0 outcomes"), "{wrong}");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.submit(2, |_| panic!("boom"))
        }));
        assert!(panicked.is_err());
        assert_eq!(group.submit(3, Ok).unwrap(), 3);
    }
}
