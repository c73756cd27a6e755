//! The life of a quarantined sample, and which changes of status are allowed.
//!
//! ```text
//!            ┌──────────────► validated (final)
//!            │   ┌──────────► rejected  (final)
//! pending ───┼───┼──► pseudo-labelled ──► validated | rejected | adapted
//!    ▲       └───┴──► adapted ──► validated | rejected
//!    └──────────────── adapted   (the adaptation was rolled back)
//! ```
//!
//! * `pending` → any other status: a human may label a sample before the heuristic looks
//!   at it, and the heuristic may adapt on it directly.
//! * `pseudo-labelled` → `validated`, `rejected` or `adapted`: the heuristic's guess awaits a
//!   human's verdict or is used.
//! * `adapted` → `validated`, `rejected`, or back to `pending` when the adaptation that used
//!   it is rolled back (the sample is again unexplained).
//! * `validated` and `rejected` are final: a human's word is not overridden by a heuristic.
//!
//! Setting the status an entry already has (same label) is accepted and changes nothing, so
//! feedback delivered twice (e.g. a sync retried) is harmless. Anything else is a
//! [`QuarantineError::Transition`](super::QuarantineError::Transition), never a panic.

use serde::{Deserialize, Serialize};

/// Where a quarantined sample is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Admitted, not looked at yet.
    Pending,
    /// The heuristic adaptation guessed `label` (e.g. from a cluster).
    PseudoLabelled {
        /// The guessed class.
        label: String,
    },
    /// A human confirmed `label`. Final.
    Validated {
        /// The true class.
        label: String,
    },
    /// A human (or a rule) said the sample is not worth learning from. Final.
    Rejected,
    /// An adaptation learned the sample as `label`.
    Adapted {
        /// The class it was learned as.
        label: String,
    },
}

/// A [`Status`] without its label: for counting and filtering without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusKind {
    /// [`Status::Pending`].
    Pending,
    /// [`Status::PseudoLabelled`].
    PseudoLabelled,
    /// [`Status::Validated`].
    Validated,
    /// [`Status::Rejected`].
    Rejected,
    /// [`Status::Adapted`].
    Adapted,
}

impl StatusKind {
    /// The name used in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            StatusKind::Pending => "pending",
            StatusKind::PseudoLabelled => "pseudo-labelled",
            StatusKind::Validated => "validated",
            StatusKind::Rejected => "rejected",
            StatusKind::Adapted => "adapted",
        }
    }

    /// Whether `self` → `to` is allowed (see the module documentation).
    pub fn may_become(self, to: StatusKind) -> bool {
        use StatusKind::*;
        match self {
            Pending => to != Pending,
            PseudoLabelled => matches!(to, Validated | Rejected | Adapted),
            Adapted => matches!(to, Validated | Rejected | Pending),
            Validated | Rejected => false,
        }
    }

    /// Whether a sample in this status has been dealt with, so that it is the first to make
    /// room for new ones: a human's verdict (validated, rejected) or a finished adaptation.
    pub fn is_resolved(self) -> bool {
        matches!(
            self,
            StatusKind::Validated | StatusKind::Rejected | StatusKind::Adapted
        )
    }

    /// Eviction order, lowest first: resolved entries, then pending, then pseudo-labelled
    /// (the heuristic is working with those and a human has yet to see them).
    pub(crate) fn eviction_tier(self) -> u8 {
        match self {
            StatusKind::Validated | StatusKind::Rejected | StatusKind::Adapted => 0,
            StatusKind::Pending => 1,
            StatusKind::PseudoLabelled => 2,
        }
    }

    /// All kinds, in declaration order.
    pub const ALL: [StatusKind; 5] = [
        StatusKind::Pending,
        StatusKind::PseudoLabelled,
        StatusKind::Validated,
        StatusKind::Rejected,
        StatusKind::Adapted,
    ];
}

impl Status {
    /// The status without its label.
    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Pending => StatusKind::Pending,
            Status::PseudoLabelled { .. } => StatusKind::PseudoLabelled,
            Status::Validated { .. } => StatusKind::Validated,
            Status::Rejected => StatusKind::Rejected,
            Status::Adapted { .. } => StatusKind::Adapted,
        }
    }

    /// The label it carries, if any.
    pub fn label(&self) -> Option<&str> {
        match self {
            Status::PseudoLabelled { label }
            | Status::Validated { label }
            | Status::Adapted { label } => Some(label),
            Status::Pending | Status::Rejected => None,
        }
    }

    /// Whether `self` may become `to`: the same status is always accepted (a no-op), else
    /// the rules in the module documentation.
    pub fn may_become(&self, to: &Status) -> bool {
        self == to || self.kind().may_become(to.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(kind: StatusKind) -> Status {
        let label = "cat".to_string();
        match kind {
            StatusKind::Pending => Status::Pending,
            StatusKind::PseudoLabelled => Status::PseudoLabelled { label },
            StatusKind::Validated => Status::Validated { label },
            StatusKind::Rejected => Status::Rejected,
            StatusKind::Adapted => Status::Adapted { label },
        }
    }

    /// The whole table, spelled out: a change to the rules must change this test.
    #[test]
    fn transition_table() {
        use StatusKind::*;
        let allowed = [
            (Pending, PseudoLabelled),
            (Pending, Validated),
            (Pending, Rejected),
            (Pending, Adapted),
            (PseudoLabelled, Validated),
            (PseudoLabelled, Rejected),
            (PseudoLabelled, Adapted),
            (Adapted, Validated),
            (Adapted, Rejected),
            (Adapted, Pending),
        ];
        for from in StatusKind::ALL {
            for to in StatusKind::ALL {
                let want = allowed.contains(&(from, to));
                assert_eq!(
                    from.may_become(to),
                    want,
                    "{} -> {}",
                    from.name(),
                    to.name()
                );
            }
        }
    }

    #[test]
    fn same_status_is_a_no_op_but_a_changed_final_label_is_not() {
        for kind in StatusKind::ALL {
            assert!(of(kind).may_become(&of(kind)), "{}", kind.name());
        }
        let a = Status::Validated {
            label: "cat".into(),
        };
        let b = Status::Validated {
            label: "dog".into(),
        };
        assert!(!a.may_become(&b));
        // A new guess replaces an old one only through a verdict or an adaptation.
        let p = Status::PseudoLabelled {
            label: "cat".into(),
        };
        let q = Status::PseudoLabelled {
            label: "dog".into(),
        };
        assert!(!p.may_become(&q));
        assert_eq!(b.label(), Some("dog"));
        assert_eq!(Status::Rejected.label(), None);
    }

    #[test]
    fn resolved_entries_are_evicted_first_and_pseudo_labelled_last() {
        use StatusKind::*;
        let mut kinds = StatusKind::ALL;
        kinds.sort_by_key(|k| k.eviction_tier());
        assert!(kinds[..3].iter().all(|k| k.is_resolved()));
        assert_eq!(kinds[3..], [Pending, PseudoLabelled]);
    }
}
