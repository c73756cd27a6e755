//! Replaying a directory of JPEG/PNG images as a frame source.
//!
//! Recorded footage and labelled datasets (`DIR/<class>/*.png`, as written by
//! `tinylcm synth`) run through exactly the same pipeline as a live camera;
//! with `labels-from-folders` the folder name becomes [`super::Truth::label`].

use std::path::{Path, PathBuf};

use super::decode::decode_image;
use super::pace::Pacer;
use super::{Frame, FrameError, FrameSource};
use crate::config_error::ConfigError;

/// Largest image file read (bytes); bigger files are reported as undecodable.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most image files one directory source lists.
pub const MAX_FILES: usize = 1_000_000;
/// Deepest sub-folder level searched with `labels-from-folders`.
pub const MAX_DEPTH: usize = 8;

/// What to do with a file that cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Log a warning and go on with the next file.
    #[default]
    Skip,
    /// Return the error to the caller.
    Stop,
}

/// Settings of directory replay (`[source.directory]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirectoryConfig {
    /// Directory holding `.jpg`, `.jpeg` or `.png` files.
    pub path: PathBuf,
    /// Descend into sub-folders and use the name of the folder holding an image
    /// as its label (default false: only files directly in `path`, no labels).
    pub labels_from_folders: bool,
    /// Start again after the last image (default false).
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Frames per second; 0 replays as fast as frames are asked for (default 0).
    pub fps: f64,
    /// Unreadable or corrupt image: `skip` (warn, default) or `stop` (error).
    pub on_error: OnError,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            path: PathBuf::new(),
            labels_from_folders: false,
            looping: false,
            fps: 0.0,
            on_error: OnError::Skip,
        }
    }
}

impl DirectoryConfig {
    /// Check the values (not the directory itself: it may appear later).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "source.directory.path",
                "no directory given",
                "set path = \"/path/to/images\"",
            ));
        }
        super::synthetic::check_fps("source.directory.fps", self.fps)
    }
}

/// One listed image.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    label: Option<String>,
}

/// Images of a directory as a [`FrameSource`].
pub struct DirectorySource {
    cfg: DirectoryConfig,
    entries: Vec<Entry>,
    next: usize,
    bytes: Vec<u8>,
    scratch: Vec<u8>,
    pacer: Pacer,
}

impl DirectorySource {
    /// List the images of `cfg.path`. A missing directory or one without
    /// images gives [`FrameError::Open`].
    pub fn new(cfg: DirectoryConfig) -> Result<Self, FrameError> {
        let open_err = |reason: String| FrameError::Open {
            what: cfg.path.display().to_string(),
            reason,
        };
        cfg.validate().map_err(|e| open_err(e.to_string()))?;
        let mut entries = Vec::new();
        let depth = if cfg.labels_from_folders {
            MAX_DEPTH
        } else {
            0
        };
        list(&cfg.path, None, depth, &mut entries).map_err(open_err)?;
        if entries.is_empty() {
            return Err(open_err(
                "no .jpg, .jpeg or .png files found".to_string()
                    + if cfg.labels_from_folders {
                        ""
                    } else {
                        " (images in sub-folders need labels-from-folders = true)"
                    },
            ));
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        tracing::info!(
            dir = %cfg.path.display(),
            images = entries.len(),
            "directory source ready"
        );
        Ok(DirectorySource {
            pacer: Pacer::new(cfg.fps),
            cfg,
            entries,
            next: 0,
            bytes: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Every image under `dir` once, unpaced, with the class sub-folder as its
    /// label and unreadable images skipped: how training and initial-state
    /// folders are read.
    pub fn labelled(dir: &std::path::Path) -> Result<Self, FrameError> {
        Self::new(DirectoryConfig {
            path: dir.to_path_buf(),
            labels_from_folders: true,
            looping: false,
            fps: 0.0,
            on_error: OnError::Skip,
        })
    }

    /// Number of images listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if no images are listed (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Read and decode entry `i` into `frame`.
    fn load(&mut self, i: usize, frame: &mut Frame) -> Result<(), FrameError> {
        let path = &self.entries[i].path;
        let decode_err = |reason: String| FrameError::Decode {
            what: path.display().to_string(),
            reason,
        };
        read_bounded(path, &mut self.bytes).map_err(decode_err)?;
        decode_image(&self.bytes, frame, &mut self.scratch).map_err(decode_err)?;
        match self.entries[i].label.as_deref() {
            Some(label) => frame.set_truth(Some(label), None),
            None => frame.truth = None,
        }
        Ok(())
    }
}

impl FrameSource for DirectorySource {
    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError> {
        let mut failures = 0;
        loop {
            if self.next >= self.entries.len() {
                if !self.cfg.looping {
                    return Ok(false);
                }
                self.next = 0;
            }
            let i = self.next;
            self.next += 1;
            match self.load(i, frame) {
                Ok(()) => break,
                Err(e) if self.cfg.on_error == OnError::Stop => return Err(e),
                Err(e) => {
                    tracing::warn!("skipping image: {e}");
                    failures += 1;
                    if failures >= self.entries.len() {
                        // Every image failed: skipping would spin forever.
                        return Err(e);
                    }
                }
            }
        }
        self.pacer.deliver(frame);
        Ok(true)
    }

    fn describe(&self) -> String {
        format!(
            "directory {} ({} images{}{})",
            self.cfg.path.display(),
            self.entries.len(),
            if self.cfg.labels_from_folders {
                ", labelled by folder"
            } else {
                ""
            },
            if self.cfg.looping { ", looping" } else { "" },
        )
    }
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Add the images in `dir` (label `label`) and, `depth` levels down, those in
/// sub-folders (labelled with their folder's name).
fn list(dir: &Path, label: Option<&str>, depth: usize, out: &mut Vec<Entry>) -> Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        // Follows symlinks: a linked folder of images is a normal use.
        let Ok(meta) = std::fs::metadata(&path) else {
            tracing::debug!(path = %path.display(), "skipping unreadable entry");
            continue;
        };
        if meta.is_dir() {
            if depth > 0 {
                let name = entry.file_name().to_string_lossy().into_owned();
                list(&path, Some(&name), depth - 1, out)?;
            }
        } else if meta.is_file() && is_image(&path) {
            if out.len() >= MAX_FILES {
                return Err(format!("more than {MAX_FILES} images"));
            }
            out.push(Entry {
                path,
                label: label.map(str::to_owned),
            });
        }
    }
    Ok(())
}

/// Read `path` into `buf` (reusing it), refusing files over [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path, buf: &mut Vec<u8>) -> Result<(), String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    buf.clear();
    let n = file
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(buf)
        .map_err(|e| e.to_string())?;
    if n as u64 > MAX_FILE_BYTES {
        return Err(format!("file is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(())
}
