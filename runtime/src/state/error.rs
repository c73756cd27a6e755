//! Errors of the state store: each names the file it concerns and what to do.

use std::path::PathBuf;

use super::batch::Batch;

/// Everything that can go wrong opening, writing, reading or snapshotting the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// redb refused an operation on the database file.
    #[error(
        "state database {path}: {what} failed: {source} (if the file is damaged beyond redb's \
         repair, restore a snapshot into a new database file)"
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        what: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// Another process (or another `Store` in this one) has the database open.
    #[error(
        "state database {path} is open in another process: only one may use it at a time; stop \
         the other tinylcm (e.g. `systemctl stop tinylcm`), or inspect a copy of the file"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer runtime than this one.
    #[error(
        "state database {path} has schema version {found}, newer than the {supported} this runtime \
         knows; it was left untouched: run the newer runtime, or restore a snapshot into a new file"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The newest version this runtime understands.
        supported: u32,
    },
    /// The schema version is older than any registered migration can upgrade.
    #[error(
        "state database {path} has schema version {found} and no migration from it is known; \
         it was left untouched"
    )]
    NoMigration {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
    },
    /// A value could not be encoded (a type serde cannot represent in postcard).
    #[error("state database {path}: cannot encode {what}: {reason}")]
    Encode {
        /// The database file.
        path: PathBuf,
        /// The key or record concerned.
        what: String,
        /// The codec's message.
        reason: String,
    },
    /// Stored bytes do not decode as the requested type.
    #[error(
        "state database {path}: {what} does not decode as the requested type ({reason}); it was \
         written by other code or is damaged: overwrite it or restore a snapshot"
    )]
    Decode {
        /// The database file (or snapshot file).
        path: PathBuf,
        /// The key or record concerned.
        what: String,
        /// The codec's message.
        reason: String,
    },
    /// One encoded value is larger than the store accepts.
    #[error("state value {what} is {len} bytes, more than the {max} allowed; store less per key")]
    ValueTooLarge {
        /// The key or record concerned.
        what: String,
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The writer thread stopped (after a failed commit, or the store is closing).
    #[error(
        "state database {path}: the writer has stopped ({reason}); nothing more can be written: \
         reopen the store"
    )]
    WriterStopped {
        /// The database file.
        path: PathBuf,
        /// Why it stopped.
        reason: String,
    },
    /// Commits are failing (a full disk, an I/O error): the writer keeps what is queued and
    /// retries with back-off, so nothing is durable yet.
    #[error(
        "state database {path}: commits are failing ({reason}); the writer keeps what is queued \
         and retries: free space on the data partition"
    )]
    CommitsFailing {
        /// The database file.
        path: PathBuf,
        /// The last commit's error.
        reason: String,
    },
    /// The writer is reopening the database after a failed commit; try again shortly.
    #[error(
        "state database {path} is being reopened after a failed commit (a full disk?); try again"
    )]
    Reopening {
        /// The database file.
        path: PathBuf,
    },
    /// An invalid setting.
    #[error("state store setting {key}: {reason}")]
    Config {
        /// The setting's name.
        key: &'static str,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the store was doing.
        what: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot id that could name a file outside the snapshots directory, or no file at all.
    #[error(
        "snapshot id {id:?} is not valid: ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and \
         '_' (see `tinylcm snapshot list`)"
    )]
    InvalidSnapshotId {
        /// The id given.
        id: String,
    },
    /// No snapshot with this id exists.
    #[error("no snapshot {id:?} in {dir} (see `tinylcm snapshot list`)")]
    SnapshotNotFound {
        /// The id asked for.
        id: String,
        /// The snapshots directory.
        dir: PathBuf,
    },
    /// A snapshot file failed verification; nothing was changed.
    #[error(
        "snapshot {path} is corrupt: {reason}; the database was not changed: use another snapshot"
    )]
    SnapshotCorrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What failed (magic, size, checksum, payload).
        reason: String,
    },
    /// A snapshot of a format or schema this runtime does not read; nothing was changed.
    #[error(
        "snapshot {path} has {what} version {found}, this runtime reads {supported}; the database \
         was not changed"
    )]
    SnapshotVersion {
        /// The snapshot file.
        path: PathBuf,
        /// `format` or `schema`.
        what: &'static str,
        /// The version in the file.
        found: u32,
        /// The version this runtime reads.
        supported: u32,
    },
}

impl StateError {
    pub(crate) fn db(
        path: &std::path::Path,
        what: &'static str,
        source: impl Into<redb::Error>,
    ) -> Self {
        StateError::Database {
            path: path.to_path_buf(),
            what,
            source: Box::new(source.into()),
        }
    }

    pub(crate) fn db_boxed(path: &std::path::Path, what: &'static str, source: DbError) -> Self {
        StateError::Database {
            path: path.to_path_buf(),
            what,
            source: source.0,
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StateError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why [`Store::try_submit`](super::Store::try_submit) did not queue a batch.
#[derive(Debug, thiserror::Error)]
pub enum TrySubmitError {
    /// The queue is full (the writer is behind): the batch is handed back untouched.
    #[error("state writer queue is full ({capacity} batches waiting); the batch was not queued")]
    Full {
        /// The batch, for the caller to retry, merge or drop (and count).
        batch: Batch,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The writer has stopped.
    #[error(transparent)]
    Stopped(#[from] StateError),
}

/// A redb error, boxed: redb's error type is large, and it only travels on failure paths.
#[derive(Debug)]
pub(crate) struct DbError(pub Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(Box::new(e.into()))
    }
}
