//! Process limits a fleet server needs. Every connected device holds a socket, and Linux
//! starts processes with a soft limit of 1024 open files even where the hard limit is far
//! higher; a few hundred devices plus the stores would hit it and new connections would be
//! refused. Like Go's runtime, sphere-lite raises its own soft limit to the hard one.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raise the soft open-files limit to the hard limit; returns the limit now in force, or
/// `None` (logged) when it cannot be read or changed — serving continues with what there is.
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-files limit");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise_open_files_limit(), Some(hard));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, hard);
    }
}
