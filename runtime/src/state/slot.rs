//! The open database, in a slot the writer can empty and refill.
//!
//! After an I/O error (a full disk: `ENOSPC` while a commit writes its pages) redb refuses
//! every later operation on that `Database` (`PreviousIo`) until it is closed and opened
//! again. The writer therefore has to close and reopen the file to recover by itself, while
//! readers on other threads hold the database only for the length of one read transaction.
//! Readers take a clone of the `Arc` from the slot; the writer empties the slot, waits for
//! those clones to go, drops the old database and opens the file again through the
//! [`Opener`].

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::error::StateError;

/// Opens the database again (the file for a real store; the same backend in tests).
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// How long a reopen waits for readers to finish their read transactions.
const READERS_GRACE: Duration = Duration::from_secs(5);

/// The current database, or none while it is being reopened.
pub(crate) struct DbSlot {
    db: RwLock<Option<Arc<Database>>>,
    opener: Option<Opener>,
}

impl DbSlot {
    /// A slot holding `db`; without `opener` the database is never reopened (commits are
    /// retried on the same database).
    pub fn new(db: Database, opener: Option<Opener>) -> Self {
        DbSlot {
            db: RwLock::new(Some(Arc::new(db))),
            opener,
        }
    }

    /// The database now, for one transaction.
    pub fn get(&self, path: &Path) -> Result<Arc<Database>, StateError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StateError::Reopening {
                path: path.to_path_buf(),
            })
    }

    /// Closes the database and opens it again (redb repairs a file whose last commit failed).
    /// On failure the slot stays empty, and the next call tries again. Without an opener,
    /// nothing happens.
    pub fn reopen(&self, path: &Path) -> Result<(), StateError> {
        let Some(opener) = &self.opener else {
            return Ok(());
        };
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            // redb locks the file: the old handle must be gone before the new one opens.
            let since = Instant::now();
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if since.elapsed() < READERS_GRACE => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still_shared);
                        return Err(StateError::Reopening {
                            path: path.to_path_buf(),
                        });
                    }
                }
            }
        }
        let db =
            opener().map_err(|e| StateError::db(path, "reopening after a failed commit", e))?;
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        Ok(())
    }
}
