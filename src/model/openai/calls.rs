//! Tool calls put back together from streamed pieces, and the call ids a turn uses. A call gets
//! its id when its first piece arrives, so its argument pieces can stream (`tool.args`) before
//! it is whole. Pure: no I/O, so any split of the deltas can be tested.

use std::collections::HashSet;

use super::wire::ToolCallDelta;

/// Calls one round may hold: far above what a model asks for at once.
pub const MAX_CALLS_PER_ROUND: usize = 64;
/// Bytes of names, ids and arguments all of one round's calls may hold while they are put back
/// together: a model (or a server) that will not stop writing a call cannot fill the server.
pub const MAX_CALL_BYTES_PER_ROUND: usize = 1 << 20;

/// One call as the model finished writing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembledCall {
    /// As the server sent it; may be empty.
    pub id: String,
    /// The id the turn uses ([`CallIds`]), given when the call's first piece arrived: the
    /// server's id when that piece had one.
    pub call_id: String,
    pub name: String,
    /// JSON text, concatenated from its pieces; may be invalid or empty.
    pub arguments: String,
}

/// A piece of a call's arguments, as it streamed; `tool_name` is the name as known by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsPiece {
    pub call_id: String,
    pub tool_name: String,
    pub delta: String,
}

/// Collects `delta.tool_calls[]` pieces into calls, by their `index`, in first-seen order.
#[derive(Debug, Default)]
pub struct CallAssembler {
    /// `(index, call)`; few calls per round, so a list beats a map.
    calls: Vec<(u32, AssembledCall)>,
    /// Bytes the calls hold, counted before each piece is taken.
    bytes: usize,
}

impl CallAssembler {
    /// Adds a piece; returns the piece of arguments it carried, if any, with its call. A piece
    /// that would take the round past [`MAX_CALLS_PER_ROUND`] or [`MAX_CALL_BYTES_PER_ROUND`] is
    /// refused, and says why: the round cannot go on.
    pub fn add(
        &mut self,
        delta: ToolCallDelta,
        ids: &mut CallIds,
    ) -> Result<Option<ArgsPiece>, String> {
        let size = [&delta.id, &delta.function.name, &delta.function.arguments]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>();
        if self.bytes + size > MAX_CALL_BYTES_PER_ROUND {
            return Err(format!(
                "the model's tool calls passed {MAX_CALL_BYTES_PER_ROUND} bytes in one round: cut short"
            ));
        }
        self.bytes += size;
        let index = self.index_for(&delta);
        let pos = match self.calls.iter().position(|(i, _)| *i == index) {
            Some(pos) => pos,
            None if self.calls.len() >= MAX_CALLS_PER_ROUND => {
                return Err(format!(
                    "the model made more than {MAX_CALLS_PER_ROUND} tool calls in one round: cut short"
                ));
            }
            None => {
                let call_id = ids.assign(delta.id.as_deref().unwrap_or(""));
                self.calls.push((
                    index,
                    AssembledCall {
                        call_id,
                        ..AssembledCall::default()
                    },
                ));
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
        let Some(arguments) = delta.function.arguments.filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        call.arguments.push_str(&arguments);
        Ok(Some(ArgsPiece {
            call_id: call.call_id.clone(),
            tool_name: call.name.clone(),
            delta: arguments,
        }))
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

    /// A call whose server id is new in its turn, so the turn uses it too.
    fn call(id: &str, name: &str, arguments: &str) -> AssembledCall {
        AssembledCall {
            id: id.into(),
            call_id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// An assembler with the turn's ids, keeping every argument piece it returns.
    #[derive(Default)]
    struct Feed {
        asm: CallAssembler,
        ids: CallIds,
        streamed: Vec<ArgsPiece>,
    }

    impl Feed {
        fn add(&mut self, delta: ToolCallDelta) {
            let piece = self
                .asm
                .add(delta, &mut self.ids)
                .expect("within the bounds");
            self.streamed.extend(piece);
        }

        /// The argument pieces of `call_id`, concatenated.
        fn streamed_for(&self, call_id: &str) -> String {
            self.streamed
                .iter()
                .filter(|p| p.call_id == call_id)
                .map(|p| p.delta.as_str())
                .collect()
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
                let mut asm = Feed::default();
                asm.add(piece(Some(0), "a", "word_count", ""));
                asm.add(piece(Some(1), "b", "sleep", &args_b[..cut_b]));
                asm.add(piece(Some(0), "", "", &args_a[..cut_a]));
                asm.add(piece(Some(1), "", "", &args_b[cut_b..]));
                asm.add(piece(Some(0), "", "", &args_a[cut_a..]));
                assert_eq!(asm.streamed_for("a"), args_a);
                assert_eq!(asm.streamed_for("b"), args_b);
                assert!(asm.streamed.iter().all(|p| !p.delta.is_empty()));
                assert_eq!(
                    asm.asm.finish(),
                    [call("a", "word_count", args_a), call("b", "sleep", args_b)],
                    "cuts {cut_a} {cut_b}"
                );
            }
        }
    }

    #[test]
    fn a_round_is_bounded_in_calls_and_bytes() {
        let mut asm = CallAssembler::default();
        let mut ids = CallIds::default();
        let chunk = "x".repeat(64 << 10);
        let mut refused = None;
        for _ in 0..(MAX_CALL_BYTES_PER_ROUND / chunk.len() + 1) {
            if let Err(e) = asm.add(piece(Some(0), "", "", &chunk), &mut ids) {
                refused = Some(e);
                break;
            }
        }
        assert!(refused.unwrap().contains("bytes in one round"));
        assert!(asm.bytes <= MAX_CALL_BYTES_PER_ROUND);

        let mut asm = CallAssembler::default();
        for i in 0..MAX_CALLS_PER_ROUND as u32 {
            asm.add(piece(Some(i), "", "clock", "{}"), &mut ids)
                .unwrap();
        }
        let e = asm
            .add(piece(Some(999), "", "clock", "{}"), &mut ids)
            .unwrap_err();
        assert!(e.contains("tool calls in one round"), "{e}");
        // More pieces of the calls it has are still taken.
        assert!(asm.add(piece(Some(0), "", "", " "), &mut ids).is_ok());
    }

    #[test]
    fn repeated_ids_and_names_count_once_and_split_names_join() {
        let mut asm = Feed::default();
        asm.add(piece(Some(3), "x", "clock", "{"));
        asm.add(piece(Some(3), "x", "clock", "}"));
        asm.add(piece(Some(5), "y", "word_", ""));
        asm.add(piece(Some(5), "", "count", "{}"));
        assert_eq!(
            asm.asm.finish(),
            [call("x", "clock", "{}"), call("y", "word_count", "{}")]
        );
    }

    #[test]
    fn pieces_without_index_follow_their_id() {
        let mut asm = Feed::default();
        asm.add(piece(None, "a", "clock", "{"));
        asm.add(piece(None, "", "", "}"));
        asm.add(piece(None, "b", "sleep", r#"{"ms":1}"#));
        asm.add(piece(None, "a", "", ""));
        assert_eq!(
            asm.asm.finish(),
            [call("a", "clock", "{}"), call("b", "sleep", r#"{"ms":1}"#)]
        );
    }

    #[test]
    fn a_call_takes_its_id_from_its_first_piece() {
        let mut asm = Feed::default();
        asm.add(piece(Some(0), "", "clock", "{"));
        asm.add(piece(Some(0), "late", "", "}"));
        asm.add(piece(Some(1), "call_1", "sleep", "{}"));
        assert_eq!(asm.streamed_for("call_1"), "{}");
        assert_eq!(asm.streamed[0].tool_name, "clock");
        let calls = asm.asm.finish();
        assert_eq!(calls[0].id, "late");
        assert_eq!(calls[0].call_id, "call_1");
        // The server's id is taken already: the turn's ids stay unique.
        assert_eq!(calls[1].call_id, "call_2");
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
