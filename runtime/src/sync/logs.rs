//! The runtime's logs for the server's log viewer: a `tracing` layer that appends one JSON
//! [`LogLine`] per event to rotating files under `<state dir>/sync/logs/`, and the reader that
//! takes what was written since the last package.
//!
//! Files are `log-<20-digit generation>.jsonl`; a file is closed at [`MAX_LOG_FILE_BYTES`]
//! (so one file always fits one package member the server shows) and the oldest are removed
//! beyond `max-log-kib`. Lines are cut to [`MAX_LOG_LINE_BYTES`]. Writes are plain appends (no
//! fsync): a power cut may lose the last lines, never the sync state. The layer never logs
//! itself; write failures are counted ([`LogLayer::write_failures`]).

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tinylcm_protocol::datahub::{LogLevel, LogLine, MAX_LOG_FILE_BYTES, MAX_LOG_LINE_BYTES};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// The log folder of the state folder `state_dir`.
pub fn log_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sync").join("logs")
}

fn file_name(generation: u64) -> String {
    format!("log-{generation:020}.jsonl")
}

fn generation_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".jsonl")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The generations present in `dir`, oldest first.
pub fn generations(dir: &Path) -> Vec<u64> {
    let mut g: Vec<u64> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(generation_of))
                .collect()
        })
        .unwrap_or_default();
    g.sort_unstable();
    g
}

/// Removes the oldest log files in `dir`, never the newest (the one being written: removing
/// an open file frees nothing), until `want` bytes are freed; returns the bytes freed. The
/// space budget's shedder for logs when the data partition is below its floor.
pub fn shed_old(dir: &Path, want: u64) -> u64 {
    let gens = generations(dir);
    let mut freed = 0;
    for g in gens.iter().take(gens.len().saturating_sub(1)) {
        if freed >= want {
            break;
        }
        let path = dir.join(file_name(*g));
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        if fs::remove_file(&path).is_ok() {
            freed += len;
        }
    }
    freed
}

struct Current {
    generation: u64,
    file: Option<File>,
    size: u64,
}

/// The layer; install it in the binary's subscriber (`tracing_subscriber::registry().with(…)`).
pub struct LogLayer {
    dir: PathBuf,
    max_total: u64,
    level: tracing::Level,
    current: Mutex<Current>,
    failures: Arc<AtomicU64>,
}

/// A layer writing lines at `level` and more severe into `dir`, keeping at most `max_kib` KiB.
pub fn log_layer(dir: PathBuf, max_kib: u64, level: tracing::Level) -> LogLayer {
    let generation = generations(&dir).last().copied().unwrap_or(1);
    LogLayer {
        dir,
        max_total: max_kib.max(64) * 1024,
        level,
        current: Mutex::new(Current {
            generation,
            file: None,
            size: 0,
        }),
        failures: Arc::new(AtomicU64::new(0)),
    }
}

impl LogLayer {
    /// Lines that could not be written so far.
    pub fn write_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Appends one line (already JSON, without newline).
    fn append(&self, line: &[u8]) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.size + line.len() as u64 + 1 > MAX_LOG_FILE_BYTES as u64 && cur.size > 0 {
            cur.file = None;
            cur.generation += 1;
            cur.size = 0;
            self.prune(cur.generation);
        }
        if cur.file.is_none() {
            let path = self.dir.join(file_name(cur.generation));
            let opened = fs::create_dir_all(&self.dir)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
            match opened {
                Ok(f) => {
                    cur.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    cur.file = Some(f);
                }
                Err(_) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let written = cur.file.as_mut().map(|f| f.write_all(&buf));
        match written {
            Some(Ok(())) => cur.size += buf.len() as u64,
            _ => {
                cur.file = None;
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes the oldest files until the others fit the budget (the current one stays).
    fn prune(&self, current: u64) {
        let gens = generations(&self.dir);
        let size = |g: u64| {
            fs::metadata(self.dir.join(file_name(g)))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let mut total: u64 = gens.iter().map(|g| size(*g)).sum();
        for g in gens {
            if total <= self.max_total.saturating_sub(MAX_LOG_FILE_BYTES as u64) || g >= current {
                break;
            }
            total -= size(g);
            let _ = fs::remove_file(self.dir.join(file_name(g)));
        }
    }
}

struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

fn level_of(level: &tracing::Level) -> LogLevel {
    match *level {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // Level ordering: ERROR is the "smallest"; keep this level and more severe.
        if *meta.level() > self.level {
            return;
        }
        let mut v = MessageVisitor {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut v);
        let mut message = v.message;
        message.push_str(&v.fields);
        // Room for the other fields and JSON escaping within the line bound.
        cut(&mut message, MAX_LOG_LINE_BYTES / 2);
        let mut target = meta.target().to_string();
        cut(&mut target, 128);
        let line = LogLine {
            unix_ms: crate::utc::now_unix_ms(),
            level: level_of(meta.level()),
            target: Some(target),
            message,
        };
        if let Ok(json) = serde_json::to_vec(&line) {
            self.append(&json);
        }
    }
}

/// Lines read past a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLines {
    /// Whole lines (each ending in `\n`), at most the bound asked for.
    pub bytes: Vec<u8>,
    /// The cursor after them.
    pub generation: u64,
    /// The offset after them.
    pub offset: u64,
    /// Whether files were removed before they were read (lines lost).
    pub lost: bool,
}

/// Reads whole lines after (`generation`, `offset`), at most `max` bytes, moving on to newer
/// files when one is read to its end.
pub fn read_new(dir: &Path, generation: u64, offset: u64, max: usize) -> std::io::Result<NewLines> {
    let gens = generations(dir);
    let mut out = NewLines {
        bytes: Vec::new(),
        generation,
        offset,
        lost: false,
    };
    let Some(&oldest) = gens.first() else {
        return Ok(out);
    };
    if out.generation < oldest {
        out.lost = out.generation != 0;
        out.generation = oldest;
        out.offset = 0;
    }
    loop {
        let path = dir.join(file_name(out.generation));
        let mut chunk = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(out.offset))?;
                let room = max.saturating_sub(out.bytes.len());
                f.take(room as u64).read_to_end(&mut chunk)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let whole = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        out.bytes.extend_from_slice(&chunk[..whole]);
        out.offset += whole as u64;
        let newer = gens.iter().copied().find(|g| *g > out.generation);
        // Move on only from a file read to its end (a file is never appended to after a
        // newer one exists) and while there is room.
        match newer {
            Some(next) if whole == chunk.len() && out.bytes.len() < max => {
                out.generation = next;
                out.offset = 0;
            }
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_become_bounded_json_lines_read_incrementally_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let layer = log_layer(logs.clone(), 64 * 1024, tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(package = 3, "uploaded");
            tracing::debug!("not shipped");
            tracing::warn!("{}", "é".repeat(5000));
        });
        let r = read_new(&logs, 0, 0, 1 << 20).unwrap();
        let lines: Vec<LogLine> = r
            .bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "uploaded package=3");
        assert_eq!(lines[0].level, LogLevel::Info);
        assert_eq!(lines[1].level, LogLevel::Warn);
        assert!(lines[1].message.len() <= MAX_LOG_LINE_BYTES / 2);
        // Nothing new: nothing read, cursor unchanged.
        let again = read_new(&logs, r.generation, r.offset, 1 << 20).unwrap();
        assert!(again.bytes.is_empty());
        assert_eq!((again.generation, again.offset), (r.generation, r.offset));

        // Rotation: enough lines for several files; the budget removes the oldest.
        let layer = log_layer(logs.clone(), 2048, tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..6000 {
                tracing::info!("line {i} {}", "x".repeat(800));
            }
        });
        let gens = generations(&logs);
        assert!(gens.len() >= 2 && gens[0] > 1, "{gens:?}");
        let total: u64 = gens
            .iter()
            .map(|g| fs::metadata(logs.join(file_name(*g))).unwrap().len())
            .sum();
        assert!(total <= 2048 * 1024 + MAX_LOG_FILE_BYTES as u64, "{total}");
        // The old cursor's file is gone: reading says so and starts at the oldest kept.
        let r = read_new(&logs, r.generation, r.offset, 64 * 1024).unwrap();
        assert!(r.lost);
        assert!(r.bytes.len() <= 64 * 1024 && r.bytes.ends_with(b"\n"));
    }

    #[test]
    fn a_partial_last_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(file_name(1)), b"{\"a\":1}\n{\"b\"").unwrap();
        let r = read_new(dir.path(), 1, 0, 1000).unwrap();
        assert_eq!(r.bytes, b"{\"a\":1}\n");
        assert_eq!(r.offset, 8);
        assert!(generation_of("log-1.jsonl").is_none());
        assert_eq!(generation_of(&file_name(42)), Some(42));
    }
}
