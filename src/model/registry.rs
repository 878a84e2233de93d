//! The models a server runs, by name, and which is the default: the providers themselves, held
//! by the actor, which starts each turn on the model the core named. The core sees only the
//! [`ModelCatalog`] made from it (names, providers, context sizes).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Model, ModelError};
use crate::core::models::{ModelCatalog, ModelEntry};

/// Every model by name; the default is always one of them.
#[derive(Clone)]
pub struct Models {
    default: String,
    by_name: BTreeMap<String, Arc<dyn Model>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("default", &self.default)
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Models {
    /// One model, the default, named `name`.
    pub fn new(name: &str, model: Arc<dyn Model>) -> Self {
        Models {
            default: name.to_owned(),
            by_name: BTreeMap::from([(name.to_owned(), model)]),
        }
    }

    /// Adds a model besides the default. A name is taken once.
    pub fn add(&mut self, name: &str, model: Arc<dyn Model>) -> Result<(), ModelError> {
        if self.by_name.contains_key(name) {
            return Err(ModelError::Failed(format!("two models are named {name:?}")));
        }
        self.by_name.insert(name.to_owned(), model);
        Ok(())
    }

    pub fn default_model(&self) -> &Arc<dyn Model> {
        &self.by_name[&self.default]
    }

    /// The model named `name`. The core only names models of [`Models::catalog`]; should it
    /// name another, the default runs the turn rather than none.
    pub fn get(&self, name: &str) -> &Arc<dyn Model> {
        self.by_name.get(name).unwrap_or_else(|| {
            tracing::error!(
                model = name,
                "the core named a model that is not configured; running the default"
            );
            self.default_model()
        })
    }

    /// What the core knows of them.
    pub fn catalog(&self) -> ModelCatalog {
        let entry = |m: &Arc<dyn Model>| ModelEntry {
            provider: m.name(),
            context_bytes: m.context_bytes(),
        };
        let mut catalog = ModelCatalog::single(&self.default, entry(self.default_model()));
        for (name, model) in &self.by_name {
            catalog.add(name, entry(model));
        }
        catalog
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::echo::Echo;
    use crate::tools::{Tools, ToolsConfig};

    fn echo() -> Arc<dyn Model> {
        let tools = Arc::new(Tools::new(&ToolsConfig::default()).expect("the current directory"));
        Arc::new(Echo {
            token_delay: std::time::Duration::ZERO,
            tools,
        })
    }

    #[test]
    fn names_are_taken_once_and_the_catalog_lists_them_all() {
        let mut m = Models::new("fast", echo());
        m.add("slow", echo()).unwrap();
        assert!(m.add("fast", echo()).is_err());
        let catalog = m.catalog();
        assert_eq!(catalog.default_name(), "fast");
        let list = catalog.list();
        let names: Vec<&str> = list.models.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["fast", "slow"]);
        assert_eq!(list.models[1].provider, "echo");
        // An unknown name falls back to the default rather than failing the turn silently.
        assert!(Arc::ptr_eq(m.get("nope"), m.default_model()));
        assert!(Arc::ptr_eq(m.get("fast"), m.default_model()));
        assert!(!Arc::ptr_eq(m.get("slow"), m.default_model()));
    }
}
