//! The one error type of the control plane. Every variant names the field it is about (when there
//! is one) and says why, so the API can answer `{"error": {"field": ..., "reason": ...}}`.

use juris_policy::ValidationErrors;

/// An error of a control-plane operation. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The input is wrong: `field` says where, `reason` what.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `targets[2].value`, `sha256.fqdn`, `line 12`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An order document failed validation (every problem is listed).
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The object does not exist.
    #[error("{what} {id:?} does not exist")]
    NotFound {
        /// What kind of object (`order`, `feed`, `target`).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request contradicts the current state (an order that exists, a transition that is not
    /// allowed, a four-eyes violation).
    #[error("{field}: {reason}")]
    Conflict {
        /// The field or object.
        field: String,
        /// Why.
        reason: String,
    },
    /// No valid token was presented.
    #[error("authorization: {0}")]
    Unauthorized(String),
    /// The token's role is too weak, or the four-eyes rule forbids it.
    #[error("authorization: {0}")]
    Forbidden(String),
    /// The SQLite store failed (I/O, corruption, busy).
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    /// A migration file is inconsistent with the database.
    #[error("store: {0}")]
    Schema(String),
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A row held JSON that does not parse (the store was edited by hand, or a bug).
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
    /// Something inside the server failed (a task panicked, the resolver is not attached).
    #[error("internal: {0}")]
    Internal(String),
}

impl ControlError {
    /// Shorthand for [`ControlError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ControlError {
        ControlError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ControlError::Conflict`].
    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> ControlError {
        ControlError::Conflict {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field the error is about (`""` when it is about no field in particular).
    pub fn field(&self) -> String {
        match self {
            ControlError::Invalid { field, .. } | ControlError::Conflict { field, .. } => {
                field.clone()
            }
            ControlError::Validation(errors) => errors
                .errors
                .first()
                .map(|e| e.path.clone())
                .unwrap_or_default(),
            ControlError::NotFound { what, .. } => (*what).to_owned(),
            ControlError::Unauthorized(_) | ControlError::Forbidden(_) => "authorization".into(),
            ControlError::Store(_)
            | ControlError::Schema(_)
            | ControlError::Corrupt(_)
            | ControlError::Internal(_)
            | ControlError::Io { .. } => String::new(),
        }
    }

    /// Why, without the field.
    pub fn reason(&self) -> String {
        match self {
            ControlError::Invalid { reason, .. } | ControlError::Conflict { reason, .. } => {
                reason.clone()
            }
            ControlError::Validation(errors) => match errors.errors.first() {
                Some(first) if errors.total == 1 => first.problem.to_string(),
                _ => errors.to_string(),
            },
            ControlError::Unauthorized(reason) | ControlError::Forbidden(reason) => reason.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the store (not the caller) is at fault: counted as a store error in `/metrics`.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            ControlError::Store(_)
                | ControlError::Schema(_)
                | ControlError::Corrupt(_)
                | ControlError::Io { .. }
        )
    }
}
