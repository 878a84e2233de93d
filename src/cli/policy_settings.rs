//! Tool policy settings as text, `<tool>=<allow|ask|deny>`, parsed for the core's
//! [`ToolPolicy`] with errors that say what is wrong. `tool_config.rs` takes them from the flags,
//! the environment and the config file; what they mean is `core/policy.rs`'s.

use std::str::FromStr;

use crate::core::policy::{Policy, ToolPolicy, ASK_USER};

/// Longest tool name a setting may give.
const MAX_NAME_LEN: usize = 128;

/// Why a policy setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown tool policy {word:?} for {tool}: use allow, ask or deny")]
    UnknownPolicy { tool: String, word: String },
    #[error(
        "{0:?} is not a tool policy setting: write <tool>=<allow|ask|deny>, e.g. write_file=allow"
    )]
    MissingEquals(String),
    #[error("{0:?} is not a tool name (letters, digits, `_`, `-` and `.`, at most 128)")]
    BadName(String),
    #[error("ask_user is always a question to the person; its policy cannot be set")]
    AskUser,
}

/// One `<tool>=<policy>` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetting {
    pub tool: String,
    pub policy: Policy,
}

impl PolicySetting {
    /// A setting of `tool` to the policy word `word`, both checked.
    pub fn new(tool: &str, word: &str) -> Result<PolicySetting, PolicyError> {
        let (tool, word) = (tool.trim(), word.trim());
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if tool.is_empty() || tool.len() > MAX_NAME_LEN || !tool.chars().all(ok_char) {
            return Err(PolicyError::BadName(tool.to_owned()));
        }
        if tool == ASK_USER {
            return Err(PolicyError::AskUser);
        }
        let policy = Policy::parse(word).ok_or_else(|| PolicyError::UnknownPolicy {
            tool: tool.to_owned(),
            word: word.to_owned(),
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
        let (tool, word) = s
            .split_once('=')
            .ok_or_else(|| PolicyError::MissingEquals(s.to_owned()))?;
        PolicySetting::new(tool, word)
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

/// Applies `settings` in order: a later setting of a tool wins.
pub fn apply<'a>(policy: &mut ToolPolicy, settings: impl IntoIterator<Item = &'a PolicySetting>) {
    for s in settings {
        policy.set(&s.tool, s.policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(tool: &str, word: &str) -> PolicyError {
        PolicyError::UnknownPolicy {
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
        let msg = "write_file".parse::<PolicySetting>().unwrap_err();
        assert!(msg.to_string().contains("write_file=allow"), "{msg}");
        let msg = "x=maybe".parse::<PolicySetting>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown tool policy \"maybe\" for x: use allow, ask or deny"
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
        apply(
            &mut p,
            &parse_list("write_file=allow,read_file=deny").unwrap(),
        );
        apply(&mut p, &parse_list("write_file=deny").unwrap());
        assert_eq!(p.policy("write_file"), Policy::Deny);
        assert_eq!(p.policy("read_file"), Policy::Deny);
        assert_eq!(p.policy("list_dir"), Policy::Allow);
        assert_eq!(p.policy("run_command"), Policy::Ask);
    }
}
