//! The S3 `Blobs` adapter: objects in one private bucket, through the `minio` crate.
//!
//! Why: sphere-lite may keep its bytes in any S3-compatible store (MinIO,
//! SeaweedFS, AWS) so the server itself holds no blob state. A [`BlobKey`] maps 1:1 to an object
//! key under an optional prefix (`<prefix>/<key>`); the key rules of [`BlobKey`] are a subset of
//! what S3 accepts, so nothing needs escaping.
//!
//! **Sync over async.** The ports are synchronous (the HTTP layer calls the domain from
//! `spawn_blocking`), the `minio` client is async. The adapter owns a small dedicated Tokio
//! runtime (one worker thread) and runs each S3 call as a task *on that runtime*, waiting for
//! its result on a plain `std` channel. Why not `Handle::current().block_on`: the adapter is also
//! used where no runtime exists (CLI, tests), and blocking a caller's runtime thread would panic
//! or starve it. Spawning onto our own runtime works from any thread; the caller only must not be
//! an async task (the ports are blocking by contract). The runtime is multi-threaded because
//! `minio` 0.3 calls `block_in_place` internally, which panics on a current-thread runtime.
//! On drop the runtime is shut down in the background, which is safe inside async code too.
//!
//! **Crate version.** `minio` 0.4.0 uses let-chains (Rust 1.88) while the workspace promises
//! Rust 1.87, so this pins 0.3.0. Its one cost: every request builds a throwaway Tokio runtime
//! to look up the bucket region in a blocking way (even when the region is configured, as here,
//! so no lookup request is sent). Fine for sphere-lite's rate of uploads; moving to 0.4 when the
//! workspace's Rust floor rises removes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt as _;
use minio::s3::client::{Client, ClientBuilder};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as S3Error, ErrorCode};
use minio::s3::http::BaseUrl;
use minio::s3::types::{S3Api, ToStream};

use crate::ports::{BlobKey, Blobs, StoreError};

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333` or `https://s3.eu-central-1.amazonaws.com`.
    pub endpoint: String,
    /// Bucket name (created, private, if missing).
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key (never logged nor put in errors).
    pub secret_key: String,
    /// Region used for signing (`us-east-1` for most self-hosted servers).
    pub region: String,
    /// Optional key prefix (no leading or trailing `/`); objects live at `<prefix>/<key>`.
    pub prefix: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3Settings {
    /// The settings of the objects the MLflow tracking adapter keeps in S3 (package records,
    /// see `adapters::mlflow::packages`): the same bucket, under the sibling prefix
    /// `<prefix>.tracking` (`tracking` without a prefix), so no listing of the blobs' own keys
    /// (`incoming/`, `devices/`, …) ever sees them.
    pub fn tracking(&self) -> S3Settings {
        let prefix = match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => "tracking".to_owned(),
            Some(p) => format!("{p}.tracking"),
        };
        S3Settings {
            prefix: Some(prefix),
            ..self.clone()
        }
    }
}

/// Blobs as objects in one S3 bucket.
pub struct S3Blobs {
    client: Client,
    bucket: String,
    /// `""` or `"<prefix>/"`.
    prefix: String,
    runtime: Option<tokio::runtime::Runtime>,
    /// Requests sent so far, by kind ([`S3Blobs::requests`]).
    sent: Arc<Counters>,
}

/// How many requests an [`S3Blobs`] has sent, by kind: what tests and benchmarks count to
/// bound the S3 requests an operation costs (S3 servers are billed, and on a small host
/// SeaweedFS is paid in CPU, per request). A request is counted when it is sent, whatever its
/// answer; a listing counts one per page, an upload one whatever its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S3Requests {
    /// `GetObject` (whole or streamed).
    pub get: u64,
    /// `PutObject` (and `CreateBucket`).
    pub put: u64,
    /// `ListObjectsV2` pages.
    pub list: u64,
    /// `DeleteObject`.
    pub delete: u64,
    /// `HeadBucket`.
    pub head: u64,
}

impl S3Requests {
    /// All requests together.
    pub fn total(&self) -> u64 {
        self.get + self.put + self.list + self.delete + self.head
    }
}

impl std::ops::Sub for S3Requests {
    type Output = S3Requests;

    /// The requests sent between two readings (`later - earlier`).
    fn sub(self, earlier: S3Requests) -> S3Requests {
        S3Requests {
            get: self.get.saturating_sub(earlier.get),
            put: self.put.saturating_sub(earlier.put),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            head: self.head.saturating_sub(earlier.head),
        }
    }
}

impl std::ops::Add for S3Requests {
    type Output = S3Requests;

    /// Two stores' requests together.
    fn add(self, other: S3Requests) -> S3Requests {
        S3Requests {
            get: self.get + other.get,
            put: self.put + other.put,
            list: self.list + other.list,
            delete: self.delete + other.delete,
            head: self.head + other.head,
        }
    }
}

/// The counts behind [`S3Requests`], bumped from the adapter's runtime.
#[derive(Default)]
struct Counters {
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    head: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Longest time one S3 call may take before the adapter gives up waiting.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);

fn err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new("s3", format!("{context}: {e}"))
}

/// A `minio` error as text without secrets: S3 error responses by code and message, transport
/// errors by their kind (the request URL of a presigned call could hold a signature; none of our
/// calls put credentials in URLs, but the text is kept short anyway).
fn describe(e: &S3Error) -> String {
    match e {
        S3Error::S3Error(r) => format!("{:?}: {}", r.code, r.message),
        S3Error::HttpError(h) => {
            let kind = if h.is_connect() {
                "cannot connect"
            } else if h.is_timeout() {
                "timed out"
            } else {
                "HTTP transport error"
            };
            match h.url() {
                Some(u) => format!("{kind} ({}://{})", u.scheme(), u.authority()),
                None => kind.to_owned(),
            }
        }
        other => other.to_string(),
    }
}

fn is_code(e: &S3Error, code: ErrorCode) -> bool {
    matches!(e, S3Error::S3Error(r) if r.code == code)
}

/// A conditional request's condition did not hold (HTTP 412).
fn is_precondition_failed(e: &S3Error) -> bool {
    matches!(e, S3Error::S3Error(r)
        if matches!(&r.code, ErrorCode::OtherError(c) if c.eq_ignore_ascii_case("PreconditionFailed")))
}

impl S3Blobs {
    /// Connect to the bucket in `settings`, creating it (private: S3 buckets are private unless
    /// a policy says otherwise, and none is set) if it does not exist.
    pub fn open(settings: &S3Settings) -> Result<Self, StoreError> {
        let mut base: BaseUrl = settings.endpoint.parse().map_err(|e: S3Error| {
            err(&format!("endpoint {:?}", settings.endpoint), describe(&e))
        })?;
        // A configured region means no GetBucketLocation round trip before each request.
        base.region = settings.region.clone();
        let provider = StaticProvider::new(&settings.access_key, &settings.secret_key, None);
        let client = ClientBuilder::new(base)
            .provider(Some(Box::new(provider)))
            .app_info(Some((
                "sphere-lite".into(),
                env!("CARGO_PKG_VERSION").into(),
            )))
            .build()
            .map_err(|e| err("S3 client", describe(&e)))?;
        let prefix = match settings.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => {
                BlobKey::new(p).map_err(|e| err("s3-prefix", e))?;
                format!("{p}/")
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sphere-s3")
            .enable_all()
            .build()
            .map_err(|e| err("S3 runtime", e))?;
        let blobs = S3Blobs {
            client,
            bucket: settings.bucket.clone(),
            prefix,
            runtime: Some(runtime),
            sent: Arc::default(),
        };
        blobs.ensure_bucket()?;
        Ok(blobs)
    }

    /// Delete the keys under `prefix` that sort before `before` (a full key), at most `max` of
    /// them (the first in key order; more are left to a later call): a listing of one page and
    /// a DELETE each. For prefixes whose key order is age order, to drop what is old.
    pub fn delete_before(&self, prefix: &str, before: &str, max: usize) -> Result<(), StoreError> {
        for (key, _) in self.list_page(prefix, None, max)? {
            if key.as_str() >= before {
                break;
            }
            self.delete(&key)?;
        }
        Ok(())
    }

    /// At most `max` keys under `prefix` that sort after `start_after` (a full key; `None`:
    /// from the first), in key order, with their sizes. Unlike [`Blobs::list_sizes`] it stops
    /// reading S3's pages once it has `max`, so a page of a long listing costs one request.
    pub fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(BlobKey, u64)>, StoreError> {
        Ok(self
            .list_modified(prefix, start_after, max)?
            .into_iter()
            .map(|(key, size, _)| (key, size))
            .collect())
    }

    /// [`S3Blobs::list_page`] with each object's last modification (Unix ms, by the S3
    /// server's clock; 0 if the server did not say).
    pub fn list_modified(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(BlobKey, u64, u64)>, StoreError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full = format!("{}{prefix}", self.prefix);
        let after = start_after.map(|k| format!("{}{k}", self.prefix));
        let strip = self.prefix.len();
        // S3 pages hold at most 1000 keys.
        let page = u16::try_from(max.clamp(1, 1000)).unwrap_or(1000);
        let sent = self.sent.clone();
        let names = self.run(async move {
            let mut pages = client
                .list_objects(bucket)
                .recursive(true)
                .prefix((!full.is_empty()).then_some(full))
                .start_after(after)
                .max_keys(Some(page))
                .to_stream()
                .await;
            let mut names = Vec::new();
            while names.len() < max {
                let Some(page) = pages.next().await else {
                    break;
                };
                Counters::bump(&sent.list);
                names.extend(page?.contents.into_iter().map(|entry| {
                    let modified = entry.last_modified.map_or(0, |t| t.timestamp_millis());
                    let modified = u64::try_from(modified).unwrap_or(0);
                    (entry.name, entry.size.unwrap_or(0), modified)
                }));
            }
            names.truncate(max);
            Ok::<_, S3Error>(names)
        })?;
        let names = names.map_err(|e| err(&format!("list {prefix}"), describe(&e)))?;
        Ok(names
            .into_iter()
            .filter_map(|(n, size, modified)| {
                let key = n.get(strip..).and_then(|k| BlobKey::new(k).ok())?;
                Some((key, size, modified))
            })
            .collect())
    }

    /// Run `fut` on the adapter's runtime and wait for it (see the module docs).
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().expect("runtime lives until drop");
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(CALL_TIMEOUT)
            .map_err(|e| err("S3 call", format!("no answer: {e}")))
    }

    fn object(&self, key: &BlobKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// The requests this store has sent since it was opened.
    pub fn requests(&self) -> S3Requests {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        S3Requests {
            get: read(&self.sent.get),
            put: read(&self.sent.put),
            list: read(&self.sent.list),
            delete: read(&self.sent.delete),
            head: read(&self.sent.head),
        }
    }

    /// Store `bytes` under `key` unless an object is there already (`PutObject` with
    /// `If-None-Match: *`): `true` if it was stored, `false` if the key existed. One request.
    /// Atomic as far as the server makes it so: SeaweedFS 4.48 answers 412 to a key that
    /// exists (checked with boto3), but two writers at the same moment may both succeed; a
    /// server that ignores the header stores the object (`true`), as [`Blobs::put`] would.
    pub fn put_if_absent(&self, key: &BlobKey, bytes: &[u8]) -> Result<bool, StoreError> {
        let mut only_new = minio::s3::multimap::Multimap::new();
        only_new.insert("If-None-Match".into(), "*".into());
        match self.put_object(key, bytes, Some(only_new))? {
            Ok(()) => Ok(true),
            Err(e) if is_precondition_failed(&e) => Ok(false),
            Err(e) => Err(err(&format!("put {key}"), describe(&e))),
        }
    }

    /// One `PutObject` of `bytes` under `key` with `headers`; the outer error is the
    /// adapter's (no answer), the inner one S3's.
    fn put_object(
        &self,
        key: &BlobKey,
        bytes: &[u8],
        headers: Option<minio::s3::multimap::Multimap>,
    ) -> Result<Result<(), S3Error>, StoreError> {
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        let body = bytes.to_vec();
        Counters::bump(&self.sent.put);
        self.run(async move {
            client
                .put_object_content(bucket, object, body)
                .content_type("application/octet-stream".into())
                .extra_headers(headers)
                .send()
                .await
                .map(drop)
        })
    }

    fn ensure_bucket(&self) -> Result<(), StoreError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let sent = self.sent.clone();
        self.run(async move {
            Counters::bump(&sent.head);
            if client.bucket_exists(&bucket).send().await?.exists {
                return Ok(());
            }
            Counters::bump(&sent.put);
            match client.create_bucket(&bucket).send().await {
                Ok(_) => Ok(()),
                // Created meanwhile by another instance.
                Err(e) if is_code(&e, ErrorCode::BucketAlreadyOwnedByYou) => Ok(()),
                Err(e) => Err(e),
            }
        })?
        .map_err(|e| err(&format!("bucket {}", self.bucket), describe(&e)))
    }
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Chunks of an object's stream that may wait between S3 and a slow reader.
const STREAM_CHUNKS: usize = 4;

/// The reading end of [`S3Blobs::open`]: chunks arrive from the adapter's runtime. A reader
/// waits for the next chunk at most [`CALL_TIMEOUT`].
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.recv_timeout(CALL_TIMEOUT) {
                Ok(Ok(chunk)) => self.chunk = chunk,
                Ok(Err(e)) => return Err(std::io::Error::other(format!("S3 stream: {e}"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "S3 stream: no data",
                    ));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

impl Blobs for S3Blobs {
    fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_object(key, bytes, None)?
            .map(drop)
            .map_err(|e| err(&format!("put {key}"), describe(&e)))
    }

    fn put_file(&self, key: &BlobKey, path: &std::path::Path) -> Result<(), StoreError> {
        Counters::bump(&self.sent.put);
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        let path = path.to_path_buf();
        self.run(async move {
            // minio reads the file part by part (multipart upload above its part size).
            client
                .put_object_content(bucket, object, path.as_path())
                .content_type("application/octet-stream".into())
                .send()
                .await
        })?
        .map(|_| ())
        .map_err(|e| err(&format!("put {key}"), describe(&e)))
    }

    fn open(
        &self,
        key: &BlobKey,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<crate::ports::BlobStream>, StoreError> {
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        // The stream is read on the adapter's runtime and handed over in chunks through a
        // small bounded channel: at most STREAM_CHUNKS chunks are ever held.
        let (tx, rx) = mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(STREAM_CHUNKS);
        Counters::bump(&self.sent.get);
        let opened = self.run(async move {
            let get = client
                .get_object(bucket, object)
                .offset((start > 0 || len.is_some()).then_some(start))
                .length(len);
            let resp = get.send().await?;
            let (mut stream, _) = resp.content.to_stream().await?;
            Ok::<_, S3Error>(async move {
                while let Some(chunk) = stream.next().await {
                    let stop = chunk.is_err();
                    // The reader went away (client gone): stop reading from S3.
                    if tx.send(chunk).is_err() || stop {
                        break;
                    }
                }
            })
        })?;
        match opened {
            Ok(pump) => {
                self.runtime
                    .as_ref()
                    .expect("runtime lives until drop")
                    .spawn(pump);
                Ok(Some(Box::new(ChannelReader {
                    rx,
                    chunk: bytes::Bytes::new(),
                })))
            }
            Err(e) if is_code(&e, ErrorCode::NoSuchKey) => Ok(None),
            Err(e) => Err(err(&format!("get {key}"), describe(&e))),
        }
    }

    fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        Counters::bump(&self.sent.get);
        let result = self.run(async move {
            let resp = client.get_object(bucket, object).send().await?;
            let bytes = resp.content.to_segmented_bytes().await?;
            Ok::<_, S3Error>(bytes.to_bytes().to_vec())
        })?;
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if is_code(&e, ErrorCode::NoSuchKey) => Ok(None),
            Err(e) => Err(err(&format!("get {key}"), describe(&e))),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        Ok(self
            .list_sizes(prefix)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    fn list_sizes(&self, prefix: &str) -> Result<Vec<(BlobKey, u64)>, StoreError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full = format!("{}{prefix}", self.prefix);
        let strip = self.prefix.len();
        let sent = self.sent.clone();
        let names = self.run(async move {
            let mut pages = client
                .list_objects(bucket)
                .recursive(true)
                .prefix((!full.is_empty()).then_some(full))
                .to_stream()
                .await;
            let mut names = Vec::new();
            while let Some(page) = pages.next().await {
                Counters::bump(&sent.list);
                names.extend(
                    page?
                        .contents
                        .into_iter()
                        .map(|entry| (entry.name, entry.size.unwrap_or(0))),
                );
            }
            Ok::<_, S3Error>(names)
        })?;
        let names = names.map_err(|e| err(&format!("list {prefix}"), describe(&e)))?;
        // Objects that are not valid blob keys (written by something else) are skipped, as the
        // directory adapter skips foreign files.
        let mut keys: Vec<(BlobKey, u64)> = names
            .into_iter()
            .filter_map(|(n, size)| {
                Some((n.get(strip..).and_then(|k| BlobKey::new(k).ok())?, size))
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        Counters::bump(&self.sent.delete);
        let result = self.run(async move { client.delete_object(bucket, object).send().await })?;
        match result {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; some servers say NoSuchKey instead.
            Err(e) if is_code(&e, ErrorCode::NoSuchKey) => Ok(()),
            Err(e) => Err(err(&format!("delete {key}"), describe(&e))),
        }
    }

    fn presigned_get(&self, key: &BlobKey, expiry: Duration) -> Result<Option<String>, StoreError> {
        // S3 caps presigned URLs at 7 days; at least one second.
        let seconds = expiry.as_secs().clamp(1, 7 * 24 * 3600) as u32;
        let client = self.client.clone();
        let (bucket, object) = (self.bucket.clone(), self.object(key));
        self.run(async move {
            client
                .get_presigned_object_url(bucket, object, http::Method::GET)
                .expiry_seconds(seconds)
                .send()
                .await
        })?
        .map(|r| Some(r.url))
        .map_err(|e| err(&format!("presign {key}"), describe(&e)))
    }
}
