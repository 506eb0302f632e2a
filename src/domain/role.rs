//! What a caller may do: a user acts on their own tasks, an admin on everyone's, a service
//! account (another backend) appends events and reads everyone's progress. A token claim, and
//! stored with a stream ticket.

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and changes only their own tasks (the role of a token that names none).
    #[default]
    User,
    /// Sees and changes everyone's tasks.
    Admin,
    /// Another backend (JWT claim `role: service`): appends to and reads the event store and
    /// reads everyone's progress; for tasks, a user like any other.
    Service,
}

impl Role {
    /// The name in tokens and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    /// The role with this name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::User, Self::Admin, Self::Service]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

impl Role {
    /// Whether this role may append to and read the event store, and read anyone's progress.
    pub fn is_trusted_backend(self) -> bool {
        matches!(self, Self::Admin | Self::Service)
    }
}
