//! Tool policy settings: for each tool name, whether a call runs at once (`allow`), waits for a
//! person to approve it (`ask`) or never runs (`deny`). Data and parsing only: deciding what to do
//! with a call is the core's, which reads [`ToolPolicy::policy`]. `ask_user` is not here: it is
//! always a question to the person, so its policy cannot be set.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The tool that asks the person a question; not configurable.
pub const ASK_USER: &str = "ask_user";

/// Tools that run at once unless configured otherwise: they read, or change nothing.
const ALLOWED_BY_DEFAULT: &[&str] = &["read_file", "list_dir", "clock", "word_count", "sleep"];

/// Longest tool name a setting may give.
const MAX_NAME_LEN: usize = 128;

/// What happens to a call of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Run at once.
    Allow,
    /// A person must approve the call first.
    Ask,
    /// Never run; the model gets an error result.
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Ask => "ask",
            Policy::Deny => "deny",
        }
    }

    /// The policy of `tool` when nothing is configured for it.
    pub fn default_for(tool: &str) -> Policy {
        if ALLOWED_BY_DEFAULT.contains(&tool) {
            Policy::Allow
        } else {
            Policy::Ask
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Policy::Allow),
            "ask" => Ok(Policy::Ask),
            "deny" => Ok(Policy::Deny),
            other => Err(PolicyError::UnknownPolicy(other.to_owned())),
        }
    }
}

/// Why a policy setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown tool policy {0:?}: use allow, ask or deny")]
    UnknownPolicy(String),
    #[error("unknown tool policy {word:?} for {tool}: use allow, ask or deny")]
    UnknownPolicyFor { tool: String, word: String },
    #[error(
        "{0:?} is not a tool policy setting: write <tool>=<allow|ask|deny>, e.g. write_file=allow"
    )]
    MissingEquals(String),
    #[error("{0:?} is not a tool name (letters, digits, `_`, `-` and `.`, at most 128)")]
    BadName(String),
    #[error("ask_user is always a question to the person; its policy cannot be set")]
    AskUser,
}

/// One `<tool>=<policy>` setting, as a flag, the environment or the config file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetting {
    pub tool: String,
    pub policy: Policy,
}

impl PolicySetting {
    /// A setting of `tool` to the policy word `policy`, both checked.
    pub fn new(tool: &str, policy: &str) -> Result<PolicySetting, PolicyError> {
        let tool = tool.trim();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if tool.is_empty() || tool.len() > MAX_NAME_LEN || !tool.chars().all(ok_char) {
            return Err(PolicyError::BadName(tool.to_owned()));
        }
        if tool == ASK_USER {
            return Err(PolicyError::AskUser);
        }
        let policy = policy
            .trim()
            .parse()
            .map_err(|_| PolicyError::UnknownPolicyFor {
                tool: tool.to_owned(),
                word: policy.trim().to_owned(),
            })?;
        Ok(PolicySetting {
            tool: tool.to_owned(),
            policy,
        })
    }
}

impl FromStr for PolicySetting {
    type Err = PolicyError;

    /// `write_file=allow`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tool, policy) = s
            .split_once('=')
            .ok_or_else(|| PolicyError::MissingEquals(s.to_owned()))?;
        PolicySetting::new(tool, policy)
    }
}

/// A comma-separated list of settings (`write_file=allow,run_command=deny`), as the environment
/// gives them. Blank items are skipped, so a trailing comma is harmless.
pub fn parse_list(text: &str) -> Result<Vec<PolicySetting>, PolicyError> {
    text.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Every tool's policy: the configured ones, and [`Policy::default_for`] for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    configured: BTreeMap<String, Policy>,
}

impl ToolPolicy {
    /// The policy a call of `tool` is under. `ask_user` is always a question, whatever this says.
    pub fn policy(&self, tool: &str) -> Policy {
        self.configured
            .get(tool)
            .copied()
            .unwrap_or_else(|| Policy::default_for(tool))
    }

    /// Applies `settings` in order over what is there: a later setting of a tool wins.
    pub fn apply(&mut self, settings: impl IntoIterator<Item = PolicySetting>) {
        for s in settings {
            self.configured.insert(s.tool, s.policy);
        }
    }

    /// The tools with a configured policy (defaults left out), by name.
    pub fn configured(&self) -> impl Iterator<Item = (&str, Policy)> {
        self.configured.iter().map(|(t, p)| (t.as_str(), *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_what_reads_and_ask_for_the_rest() {
        let p = ToolPolicy::default();
        for tool in ["read_file", "list_dir", "clock", "word_count", "sleep"] {
            assert_eq!(p.policy(tool), Policy::Allow, "{tool}");
        }
        for tool in ["write_file", "run_command", "some_future_tool", ""] {
            assert_eq!(p.policy(tool), Policy::Ask, "{tool}");
        }
    }

    fn unknown(tool: &str, word: &str) -> PolicyError {
        PolicyError::UnknownPolicyFor {
            tool: tool.into(),
            word: word.into(),
        }
    }

    #[test]
    fn settings_parse_or_say_what_is_wrong() {
        let ok = |s: &str| s.parse::<PolicySetting>().unwrap();
        assert_eq!(
            ok("write_file=allow"),
            PolicySetting {
                tool: "write_file".into(),
                policy: Policy::Allow
            }
        );
        assert_eq!(ok(" run_command = deny ").policy, Policy::Deny);
        assert_eq!(ok("mcp.fs-read=ask").tool, "mcp.fs-read");
        let table: &[(&str, PolicyError)] = &[
            (
                "write_file",
                PolicyError::MissingEquals("write_file".into()),
            ),
            ("write_file=yes", unknown("write_file", "yes")),
            ("write_file=Allow", unknown("write_file", "Allow")),
            ("write_file=", unknown("write_file", "")),
            ("=allow", PolicyError::BadName("".into())),
            ("a b=allow", PolicyError::BadName("a b".into())),
            ("ask_user=allow", PolicyError::AskUser),
        ];
        for (text, want) in table {
            assert_eq!(text.parse::<PolicySetting>().as_ref(), Err(want), "{text}");
        }
        let msg = "write_file"
            .parse::<PolicySetting>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("write_file=allow"), "{msg}");
        let msg = "x=maybe".parse::<PolicySetting>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown tool policy \"maybe\" for x: use allow, ask or deny"
        );
        assert_eq!(
            "maybe".parse::<Policy>(),
            Err(PolicyError::UnknownPolicy("maybe".into()))
        );
    }

    #[test]
    fn lists_split_on_commas_and_skip_blanks() {
        let list = parse_list("write_file=allow, run_command=deny,,").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].policy, Policy::Deny);
        assert!(parse_list("").unwrap().is_empty());
        assert_eq!(
            parse_list("write_file=allow;run_command=deny"),
            Err(unknown("write_file", "allow;run_command=deny"))
        );
    }

    #[test]
    fn later_settings_win_and_defaults_stay_for_the_rest() {
        let mut p = ToolPolicy::default();
        p.apply(parse_list("write_file=allow,read_file=deny").unwrap());
        p.apply(parse_list("write_file=deny").unwrap());
        assert_eq!(p.policy("write_file"), Policy::Deny);
        assert_eq!(p.policy("read_file"), Policy::Deny);
        assert_eq!(p.policy("list_dir"), Policy::Allow);
        assert_eq!(p.policy("run_command"), Policy::Ask);
        let configured: Vec<_> = p.configured().collect();
        assert_eq!(
            configured,
            [("read_file", Policy::Deny), ("write_file", Policy::Deny)]
        );
    }
}
