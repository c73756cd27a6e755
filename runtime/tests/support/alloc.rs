//! A global allocator that counts the current thread's allocations, for tests
//! asserting that a path allocates nothing in its steady state.
//!
//! Install it in a test crate with
//! `#[global_allocator] static GLOBAL: alloc_support::Counting = alloc_support::Counting;`.

// Each test crate uses some of the helpers.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator (delegates to the system allocator).
pub struct Counting;

// Both the switch and the count are per thread: tests run in parallel, and a
// shared counter would add one test's allocations to another's.
thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    if TRACK.with(Cell::get) {
        ALLOCS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's layout, forwarded unchanged under the same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` came from `System` with `layout`; the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) made by `f` on this thread.
pub fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    ALLOCS.with(Cell::get) - before
}

/// Switch counting of this thread's allocations on or off and return the count so far, for
/// spans that a closure cannot wrap (e.g. from one observer callback to a later one).
pub fn track(on: bool) -> usize {
    TRACK.with(|t| t.set(on));
    ALLOCS.with(Cell::get)
}
