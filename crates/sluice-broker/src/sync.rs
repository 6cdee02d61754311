//! Locking that survives a panic elsewhere: every broker mutex guards plain data that a
//! panicking holder cannot leave half-changed in a way that matters more than stopping the node.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data even if a holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
