//! Tool calls put back together from streamed pieces, and the call ids a turn uses. Pure: no
//! I/O, so any split of the deltas can be tested.

use std::collections::HashSet;

use super::wire::ToolCallDelta;

/// One call as the model finished writing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembledCall {
    /// As the server sent it; may be empty.
    pub id: String,
    pub name: String,
    /// JSON text, concatenated from its pieces; may be invalid or empty.
    pub arguments: String,
}

/// Collects `delta.tool_calls[]` pieces into calls, by their `index`, in first-seen order.
#[derive(Debug, Default)]
pub struct CallAssembler {
    /// `(index, call)`; few calls per round, so a list beats a map.
    calls: Vec<(u32, AssembledCall)>,
}

impl CallAssembler {
    pub fn add(&mut self, delta: ToolCallDelta) {
        let index = self.index_for(&delta);
        let pos = match self.calls.iter().position(|(i, _)| *i == index) {
            Some(pos) => pos,
            None => {
                self.calls.push((index, AssembledCall::default()));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos].1;
        // Some servers repeat `id` and `name` in every piece: the first one counts.
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            if call.id.is_empty() {
                call.id = id;
            }
        }
        if let Some(name) = delta.function.name.filter(|n| !n.is_empty()) {
            if call.name.is_empty() {
                call.name = name;
            } else if call.name != name {
                call.name.push_str(&name);
            }
        }
        if let Some(arguments) = delta.function.arguments {
            call.arguments.push_str(&arguments);
        }
    }

    /// The call a piece belongs to. Without an `index` (some servers omit it), a piece with a new
    /// id starts a new call and any other piece continues the latest call.
    fn index_for(&self, delta: &ToolCallDelta) -> u32 {
        if let Some(index) = delta.index {
            return index;
        }
        let next = self.calls.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        match delta.id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => self
                .calls
                .iter()
                .find(|(_, c)| c.id == id)
                .map_or(next, |(i, _)| *i),
            None => self.calls.last().map_or(next, |(i, _)| *i),
        }
    }

    pub fn finish(self) -> Vec<AssembledCall> {
        self.calls.into_iter().map(|(_, c)| c).collect()
    }
}

/// Call ids unique within a turn (the store keys tool calls by turn and call id): the server's
/// id when it has one not yet used, else a generated `call_<n>`.
#[derive(Debug, Default)]
pub struct CallIds {
    used: HashSet<String>,
    generated: u64,
}

impl CallIds {
    pub fn assign(&mut self, server_id: &str) -> String {
        if !server_id.is_empty() && self.used.insert(server_id.to_owned()) {
            return server_id.to_owned();
        }
        loop {
            self.generated += 1;
            let id = format!("call_{}", self.generated);
            if self.used.insert(id.clone()) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::FunctionDelta;
    use super::*;

    fn piece(index: Option<u32>, id: &str, name: &str, args: &str) -> ToolCallDelta {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ToolCallDelta {
            index,
            id: some(id),
            function: FunctionDelta {
                name: some(name),
                arguments: some(args),
            },
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> AssembledCall {
        AssembledCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn interleaved_calls_assemble_by_index_for_every_split() {
        let args_a = r#"{"text": "one two é"}"#;
        let args_b = r#"{"ms": 5}"#;
        // Every split point of each argument text, pieces of the two calls interleaved.
        for cut_a in 0..=args_a.len() {
            if !args_a.is_char_boundary(cut_a) {
                continue;
            }
            for cut_b in 0..=args_b.len() {
                let mut asm = CallAssembler::default();
                asm.add(piece(Some(0), "a", "word_count", ""));
                asm.add(piece(Some(1), "b", "sleep", &args_b[..cut_b]));
                asm.add(piece(Some(0), "", "", &args_a[..cut_a]));
                asm.add(piece(Some(1), "", "", &args_b[cut_b..]));
                asm.add(piece(Some(0), "", "", &args_a[cut_a..]));
                assert_eq!(
                    asm.finish(),
                    [call("a", "word_count", args_a), call("b", "sleep", args_b)],
                    "cuts {cut_a} {cut_b}"
                );
            }
        }
    }

    #[test]
    fn repeated_ids_and_names_count_once_and_split_names_join() {
        let mut asm = CallAssembler::default();
        asm.add(piece(Some(3), "x", "clock", "{"));
        asm.add(piece(Some(3), "x", "clock", "}"));
        asm.add(piece(Some(5), "y", "word_", ""));
        asm.add(piece(Some(5), "", "count", "{}"));
        assert_eq!(
            asm.finish(),
            [call("x", "clock", "{}"), call("y", "word_count", "{}")]
        );
    }

    #[test]
    fn pieces_without_index_follow_their_id() {
        let mut asm = CallAssembler::default();
        asm.add(piece(None, "a", "clock", "{"));
        asm.add(piece(None, "", "", "}"));
        asm.add(piece(None, "b", "sleep", r#"{"ms":1}"#));
        asm.add(piece(None, "a", "", ""));
        assert_eq!(
            asm.finish(),
            [call("a", "clock", "{}"), call("b", "sleep", r#"{"ms":1}"#)]
        );
    }

    #[test]
    fn ids_are_unique_within_a_turn() {
        let mut ids = CallIds::default();
        assert_eq!(ids.assign(""), "call_1");
        assert_eq!(ids.assign("call_2"), "call_2");
        assert_eq!(ids.assign(""), "call_3");
        assert_eq!(ids.assign("abc"), "abc");
        assert_eq!(ids.assign("abc"), "call_4");
    }
}
