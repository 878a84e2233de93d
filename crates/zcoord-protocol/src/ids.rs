//! Typed identifiers: UUID v7 newtypes (they sort by creation time) that serialise as plain strings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses the textual form; `None` for anything that is not a UUID.
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// One conversation.
    SessionId
);
id_type!(
    /// One message within a session.
    MessageId
);
id_type!(
    /// One model run answering one user message.
    TurnId
);
id_type!(
    /// One process lifetime of the primary; changes on every restart or failover.
    InstanceId
);
id_type!(
    /// One human-in-the-loop request: an approval or a question.
    HitlId
);
