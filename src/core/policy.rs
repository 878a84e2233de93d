//! Which tool calls run at once, which wait for a person, and which never run: the tool policy
//! the core applies to every call a model makes. Plain data; the configuration fills it.

use std::collections::HashMap;

/// What happens to a call of one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Runs at once.
    Allow,
    /// A person approves it first (`hitl.pending`).
    Ask,
    /// Never runs; the model gets an error result.
    Deny,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Policy::Allow,
            "ask" => Policy::Ask,
            "deny" => Policy::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Ask => "ask",
            Policy::Deny => "deny",
        }
    }
}

/// The tool the model asks a person a question with: always a question, whatever the policy.
pub use crate::tools::ASK_USER;

/// Tools that only read, or do nothing a person need approve: `allow` unless set otherwise.
pub const ALLOWED_BY_DEFAULT: &[&str] = &["read_file", "list_dir", "clock", "word_count", "sleep"];

/// The policy of every tool: a setting per name, else the default (`allow` for the tools in
/// [`ALLOWED_BY_DEFAULT`], `ask` for any other).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    settings: HashMap<String, Policy>,
}

impl ToolPolicy {
    /// Sets `tool`'s policy (a later setting of the same tool wins).
    pub fn set(&mut self, tool: &str, policy: Policy) {
        self.settings.insert(tool.to_owned(), policy);
    }

    /// What was set for `tool`, if anything.
    pub fn setting(&self, tool: &str) -> Option<Policy> {
        self.settings.get(tool).copied()
    }

    pub fn policy(&self, tool: &str) -> Policy {
        if let Some(p) = self.settings.get(tool) {
            return *p;
        }
        if ALLOWED_BY_DEFAULT.contains(&tool) {
            Policy::Allow
        } else {
            Policy::Ask
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_settings() {
        let mut p = ToolPolicy::default();
        assert_eq!(p.policy("read_file"), Policy::Allow);
        assert_eq!(p.policy("write_file"), Policy::Ask);
        assert_eq!(p.policy("anything_else"), Policy::Ask);
        p.set("write_file", Policy::Allow);
        p.set("read_file", Policy::Deny);
        assert_eq!(p.policy("write_file"), Policy::Allow);
        assert_eq!(p.policy("read_file"), Policy::Deny);
        assert_eq!(Policy::parse("ask"), Some(Policy::Ask));
        assert_eq!(Policy::parse("maybe"), None);
    }
}
