//! What the core knows of the models: their names, which is the default, and how many bytes of
//! history each is given. It picks the model a turn runs (the message's, else the session's,
//! else the default) and answers `model.list` and `session.configure`; the models themselves
//! live in the app layer (`model::registry`).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::error::CoreError;
use super::persist::Change;
use super::state::{record_of, Core};
use crate::protocol::events::Event;
use crate::protocol::limits::DEFAULT_CONTEXT_BYTES;
use crate::protocol::models::{Configure, ModelInfo, ModelListResult, Setting};
use crate::protocol::types::SessionPayload;

/// A model as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// What runs it (`echo`, `openai:<model>`), for clients to show.
    pub provider: String,
    /// Most bytes of message content a turn of this model is given (and reserves).
    pub context_bytes: usize,
}

/// Every model by name, and the default's name (always one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCatalog {
    default: String,
    models: BTreeMap<String, ModelEntry>,
}

impl Default for ModelCatalog {
    /// The embedded echo model alone, as `serve` runs with no model settings.
    fn default() -> Self {
        ModelCatalog::single(
            "echo",
            ModelEntry {
                provider: "echo".into(),
                context_bytes: DEFAULT_CONTEXT_BYTES,
            },
        )
    }
}

impl ModelCatalog {
    /// One model, the default.
    pub fn single(name: &str, entry: ModelEntry) -> Self {
        ModelCatalog {
            default: name.to_owned(),
            models: BTreeMap::from([(name.to_owned(), entry)]),
        }
    }

    /// Adds a model besides the default; a name already taken keeps its first model.
    pub fn add(&mut self, name: &str, entry: ModelEntry) -> bool {
        if self.models.contains_key(name) {
            return false;
        }
        self.models.insert(name.to_owned(), entry);
        true
    }

    /// The default model: in the catalog by construction (`single` makes it, `add` never
    /// removes one).
    pub fn default_entry(&self) -> (&str, &ModelEntry) {
        (&self.default, &self.models[&self.default])
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The model named `name`, or `model_not_found` listing the names there are.
    pub fn get(&self, name: &str) -> Result<&ModelEntry, CoreError> {
        self.models
            .get(name)
            .ok_or_else(|| CoreError::ModelNotFound {
                model: name.to_owned(),
                available: self.models.keys().cloned().collect(),
            })
    }

    /// The model a turn runs: the message's choice, else the session's, else the default.
    pub fn pick<'a>(
        &'a self,
        message: Option<&'a str>,
        session: Option<&'a str>,
    ) -> Result<(&'a str, &'a ModelEntry), CoreError> {
        let name = message.or(session).unwrap_or(&self.default);
        Ok((name, self.get(name)?))
    }

    /// `model.list`, names in order.
    pub fn list(&self) -> ModelListResult {
        ModelListResult {
            default: self.default.clone(),
            models: self
                .models
                .iter()
                .map(|(name, m)| ModelInfo {
                    name: name.clone(),
                    provider: m.provider.clone(),
                    default: *name == self.default,
                    context_bytes: m.context_bytes as u64,
                })
                .collect(),
        }
    }
}

impl Core {
    /// `session.configure`: sets, resets or keeps the session's model and system prompt. A
    /// change is saved and published as `session.update`; asking for what is already set
    /// changes nothing and publishes nothing. A running turn keeps the settings it started with.
    pub(super) fn configure(
        &mut self,
        c: Configure,
        now: OffsetDateTime,
    ) -> Result<SessionPayload, CoreError> {
        self.refuse_if_shutting_down()?;
        self.refuse_if_degraded()?;
        let id = self.session(&c.session_id)?.id;
        if let Setting::Set(name) = &c.model {
            self.config.models.get(name)?;
        }
        let session = self.sessions.get_mut(&id).expect("resolved above");
        let model = c.model.apply(session.model.clone());
        let system_prompt = c.system_prompt.apply(session.system_prompt.clone());
        if model == session.model && system_prompt == session.system_prompt {
            return Ok(session.payload());
        }
        session.model = model;
        session.system_prompt = system_prompt;
        session.updated_at = now;
        let payload = session.payload();
        let record = record_of(session);
        self.persist(Change::SessionUpsert(record));
        self.publish(Event::SessionUpdate(payload.clone()), now);
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: &str, bytes: usize) -> ModelEntry {
        ModelEntry {
            provider: provider.into(),
            context_bytes: bytes,
        }
    }

    #[test]
    fn the_message_beats_the_session_which_beats_the_default() {
        let mut c = ModelCatalog::single("a", entry("echo", 1));
        assert!(c.add("b", entry("openai:b", 2)));
        assert!(!c.add("a", entry("openai:x", 3)), "a name is taken once");
        assert_eq!(c.pick(None, None).unwrap().0, "a");
        assert_eq!(c.pick(None, Some("b")).unwrap().0, "b");
        assert_eq!(
            c.pick(Some("a"), Some("b")).unwrap(),
            ("a", &entry("echo", 1))
        );
        assert_eq!(
            c.pick(Some("zz"), Some("b")).unwrap_err(),
            CoreError::ModelNotFound {
                model: "zz".into(),
                available: vec!["a".into(), "b".into()]
            }
        );
        let list = c.list();
        assert_eq!(list.default, "a");
        let names: Vec<(&str, bool, u64)> = list
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.default, m.context_bytes))
            .collect();
        assert_eq!(names, [("a", true, 1), ("b", false, 2)]);
    }
}
