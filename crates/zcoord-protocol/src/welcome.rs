//! `instance.welcome` (protocol version 2): the opt-in answer to a subscription to
//! `instance.welcome/<token>`, telling that SUB socket that every subscription it made before is
//! live. Not an event: it takes no `seq`, so `seq` stays unique and gap-free over what the core
//! publishes, and it is never replayed (PROTOCOL §8, §13).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::topic;
use super::ids::InstanceId;

/// The key prefix a client subscribes to, followed by its token, to ask for a welcome.
pub const WELCOME_PREFIX: &str = "instance.welcome/";
/// The longest token answered; a longer one (or an empty one, or one that is not UTF-8) gets no
/// welcome.
pub const MAX_WELCOME_TOKEN_BYTES: usize = 128;

/// The payload: whose welcome this is, and the number of the last event published before it.
/// Every later event whose key matches one of the socket's earlier subscriptions reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WelcomePayload {
    pub token: String,
    pub last_seq: u64,
}

/// Frame 2 of a welcome: an event envelope without `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WelcomeEnvelope {
    pub instance_id: InstanceId,
    /// Always `instance.welcome`.
    #[schemars(extend("const" = topic::INSTANCE_WELCOME))]
    pub topic: String,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub payload: WelcomePayload,
}

/// A welcome's two frames, as the transport publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Frame 1: `instance.welcome/<token>`.
    pub key: String,
    /// Frame 2: the [`WelcomeEnvelope`].
    pub body: Vec<u8>,
}

/// The token a subscription asks a welcome for: what follows [`WELCOME_PREFIX`], when it is
/// 1 to [`MAX_WELCOME_TOKEN_BYTES`] bytes of UTF-8. Any other subscription asks for none.
pub fn requested_token(subscription: &[u8]) -> Option<&str> {
    let token = subscription.strip_prefix(WELCOME_PREFIX.as_bytes())?;
    if token.is_empty() || token.len() > MAX_WELCOME_TOKEN_BYTES {
        return None;
    }
    std::str::from_utf8(token).ok()
}

impl Welcome {
    /// The welcome for `token`, after the event numbered `last_seq` went out.
    pub fn encode(
        token: &str,
        last_seq: u64,
        timestamp: OffsetDateTime,
        instance_id: InstanceId,
    ) -> Welcome {
        let env = WelcomeEnvelope {
            instance_id,
            topic: topic::INSTANCE_WELCOME.to_owned(),
            timestamp,
            payload: WelcomePayload {
                token: token.to_owned(),
                last_seq,
            },
        };
        Welcome {
            key: format!("{WELCOME_PREFIX}{token}"),
            // Serialising these types cannot fail: every map key is a string.
            body: serde_json::to_vec(&env).unwrap_or_default(),
        }
    }

    /// The welcome in a PUB message's frames, if it is one for `token`: the key must be the
    /// token's and the envelope a welcome naming it. Anything else (an event, another client's
    /// welcome) is `None`.
    pub fn parse(frames: &[Vec<u8>], token: &str) -> Option<WelcomeEnvelope> {
        let [key, body] = frames else {
            return None;
        };
        if requested_token(key) != Some(token) {
            return None;
        }
        let env: WelcomeEnvelope = serde_json::from_slice(body).ok()?;
        (env.topic == topic::INSTANCE_WELCOME && env.payload.token == token).then_some(env)
    }
}

/// Whether a PUB message's key is a welcome's (any client's).
pub fn is_welcome_key(key: &[u8]) -> bool {
    key.starts_with(WELCOME_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use time::macros::datetime;
    use uuid::Uuid;

    const T: OffsetDateTime = datetime!(2026-11-20 10:00:00 UTC);

    #[test]
    fn golden_welcome_has_no_seq_and_is_keyed_by_its_token() {
        let iid = InstanceId(Uuid::from_u128(1));
        let w = Welcome::encode("a1b2", 41, T, iid);
        assert_eq!(w.key, "instance.welcome/a1b2");
        let v: Value = serde_json::from_slice(&w.body).unwrap();
        let schema = crate::schema::Bundle::protocol().json_schema();
        crate::schema::check(&schema, "WelcomeEnvelope", &v).unwrap();
        assert!(
            crate::schema::check(&schema, "EventEnvelope", &v).is_err(),
            "a welcome is not an event"
        );
        assert_eq!(
            v,
            json!({"instance_id": "00000000-0000-0000-0000-000000000001",
                   "topic": "instance.welcome", "timestamp": "2026-11-20T10:00:00Z",
                   "payload": {"token": "a1b2", "last_seq": 41}})
        );
        let frames = vec![w.key.into_bytes(), w.body];
        assert_eq!(
            Welcome::parse(&frames, "a1b2").map(|e| e.payload.last_seq),
            Some(41)
        );
        assert!(Welcome::parse(&frames, "other").is_none(), "not ours");
    }

    #[test]
    fn only_welcome_keys_with_a_sane_token_ask_for_one() {
        assert_eq!(requested_token(b"instance.welcome/x"), Some("x"));
        assert_eq!(requested_token(b"instance.welcome/"), None, "empty");
        assert_eq!(requested_token(b""), None, "everything is not a request");
        assert_eq!(
            requested_token(b"instance."),
            None,
            "a prefix of one neither"
        );
        assert_eq!(requested_token(b"llm.token/"), None);
        assert_eq!(requested_token(b"instance.welcome/\xff"), None, "not UTF-8");
        let long = format!("instance.welcome/{}", "t".repeat(MAX_WELCOME_TOKEN_BYTES));
        assert!(requested_token(long.as_bytes()).is_some());
        let longer = format!(
            "instance.welcome/{}",
            "t".repeat(MAX_WELCOME_TOKEN_BYTES + 1)
        );
        assert_eq!(requested_token(longer.as_bytes()), None);
    }
}
