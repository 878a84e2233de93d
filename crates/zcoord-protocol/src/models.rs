//! Named models and per-session settings on the wire: the `model.list` result (also shown in
//! `instance.info`), the `session.configure` params, and the three-way setting a param can ask
//! for (leave it, reset it to the server's default, or set it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One model the server can run, by the name clients use for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// The name `session.configure` and `message.send` take (`[models.NAME]`, or for a model
    /// given as `--model echo|openai:<model>`, that text).
    pub name: String,
    /// What runs it: `echo`, or `openai:<model>` for an OpenAI-compatible server.
    pub provider: String,
    /// The turn runs this model when neither the message nor the session names one.
    pub default: bool,
    /// Most bytes of a session's newest messages a turn of this model is given.
    pub context_bytes: u64,
}

/// `model.list`'s answer: every model, by name, and the default's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelListResult {
    pub default: String,
    pub models: Vec<ModelInfo>,
}

/// A setting a call may leave as it is (member absent), reset to the server's default (`null`)
/// or set (a value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Setting<T> {
    #[default]
    Keep,
    Reset,
    Set(T),
}

impl<T> Setting<T> {
    /// The value `current` becomes.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Setting::Keep => current,
            Setting::Reset => None,
            Setting::Set(v) => Some(v),
        }
    }
}

/// `session.configure`: the session's model and system prompt, each left, reset or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configure {
    pub session_id: String,
    pub model: Setting<String>,
    /// `""` is a setting of its own: no system prompt at all, not even the model's configured one.
    pub system_prompt: Setting<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_keeps_resets_or_sets() {
        let now = Some("a".to_owned());
        assert_eq!(Setting::Keep.apply(now.clone()), now);
        assert_eq!(Setting::<String>::Reset.apply(now.clone()), None);
        assert_eq!(Setting::Set("b".to_owned()).apply(now), Some("b".into()));
    }
}
