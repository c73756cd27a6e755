//! The layout of a user's held-out folder: class sub-folders (the truth is the folder's
//! name), optionally grouped one level up into phase folders.
//!
//! ```text
//! held-out/<class>/*.png            one phase, "all"
//! held-out/<phase>/<class>/*.png    scored per phase (e.g. day/, night/, rain/)
//! ```
//!
//! Without class folders there is no truth to score against, so such a folder is refused
//! with the layout it should have rather than scored as nothing.

use std::path::{Path, PathBuf};

use super::EvalError;

/// One phase of held-out frames: the folder whose sub-folders are the classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOutPhase {
    /// The phase folder's name; `None` when the classes sit directly in the held-out folder.
    pub phase: Option<String>,
    /// The folder holding the class sub-folders.
    pub dir: PathBuf,
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Sub-folders of `dir` (links followed) by name, and whether `dir` holds images itself.
fn entries(dir: &Path) -> Result<(Vec<(String, PathBuf)>, bool), EvalError> {
    let io = |source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut dirs = Vec::new();
    let mut images = false;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                dirs.push((name, path));
            }
            Ok(m) if m.is_file() && is_image(&path) => images = true,
            _ => {}
        }
    }
    dirs.sort();
    Ok((dirs, images))
}

/// The phases of the held-out folder `dir`.
pub fn layout(dir: &Path) -> Result<Vec<HeldOutPhase>, EvalError> {
    let refuse = |reason: String| EvalError::HeldOut {
        path: dir.to_path_buf(),
        reason,
    };
    let (subdirs, _) = entries(dir)?;
    let mut classes = Vec::new();
    let mut phases = Vec::new();
    for (name, path) in subdirs {
        let (inner, images) = entries(&path)?;
        if images {
            classes.push(name);
        } else if inner.iter().any(|(_, p)| entries(p).is_ok_and(|(_, i)| i)) {
            phases.push(HeldOutPhase {
                phase: Some(name),
                dir: path,
            });
        }
    }
    match (classes.is_empty(), phases.is_empty()) {
        (false, true) => Ok(vec![HeldOutPhase {
            phase: None,
            dir: dir.to_path_buf(),
        }]),
        (true, false) => Ok(phases),
        (false, false) => Err(refuse(format!(
            "it mixes class folders ({}) with phase folders ({}); use either \
             <held-out>/<class>/*.png or <held-out>/<phase>/<class>/*.png",
            classes.join(", "),
            phases
                .iter()
                .filter_map(|p| p.phase.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        (true, true) => Err(refuse(
            "no class sub-folders with images, so there is no truth to score against; \
             put each class's images in <held-out>/<class>/ (the folder name is the true \
             label), optionally grouped as <held-out>/<phase>/<class>/"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not decoded here").unwrap();
    }

    #[test]
    fn class_folders_are_one_phase() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("ball/1.png"));
        touch(&d.path().join("box/1.jpg"));
        let l = layout(d.path()).unwrap();
        assert_eq!(
            l,
            vec![HeldOutPhase {
                phase: None,
                dir: d.path().to_path_buf()
            }]
        );
    }

    #[test]
    fn phase_folders_are_scored_each() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("night/ball/1.png"));
        touch(&d.path().join("day/ball/1.png"));
        touch(&d.path().join("day/box/1.PNG"));
        let l = layout(d.path()).unwrap();
        let names: Vec<_> = l.iter().map(|p| p.phase.clone().unwrap()).collect();
        assert_eq!(names, ["day", "night"]);
        assert_eq!(l[1].dir, d.path().join("night"));
    }

    #[test]
    fn a_folder_without_class_folders_is_refused_with_the_layout() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("1.png"));
        std::fs::create_dir(d.path().join("empty")).unwrap();
        let e = layout(d.path()).unwrap_err().to_string();
        assert!(e.contains("no class sub-folders"), "{e}");
        assert!(e.contains("<held-out>/<class>/"), "{e}");
        assert!(e.contains(&d.path().display().to_string()), "{e}");

        touch(&d.path().join("ball/1.png"));
        touch(&d.path().join("night/ball/1.png"));
        let e = layout(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("mixes class folders (ball) with phase folders (night)"),
            "{e}"
        );

        let missing = layout(&d.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
    }
}
