//! What a caller may do: a user acts on their own tasks, an admin on everyone's. A token
//! claim, and stored with a stream ticket.

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and changes only their own tasks.
    User,
    /// Sees and changes everyone's tasks.
    Admin,
}

impl Role {
    /// The name in tokens and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// The role with this name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::User, Self::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}
