//! Where a message's text comes from: the argument, stdin (`-`) or a file (`--file`), so a long
//! prompt never meets the shell's argument limit. Reading stops one byte past the server's
//! content limit: a larger text is refused here, with its size, instead of being read whole and
//! then refused by the server.

use std::io::Read;
use std::path::Path;

use crate::protocol::limits::MAX_CONTENT_BYTES;

/// Why there is no text to send.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("give the message as an argument, `-` for stdin, or --file PATH")]
    Missing,
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} is more than {MAX_CONTENT_BYTES} bytes (256 KiB), the most a message may hold; nothing was sent")]
    TooLong { what: String },
    #[error("{what} is not UTF-8 text (byte {at}); nothing was sent")]
    NotText { what: String, at: usize },
}

/// The text to send: `text` as given, stdin when it is `-`, else the contents of `file`.
pub fn message_text(text: Option<&str>, file: Option<&Path>) -> Result<String, InputError> {
    match (text, file) {
        (Some("-"), _) => read_bounded(std::io::stdin().lock(), "stdin"),
        (Some(t), _) if t.len() > MAX_CONTENT_BYTES => Err(InputError::TooLong {
            what: "the message".into(),
        }),
        (Some(t), _) => Ok(t.to_owned()),
        (None, Some(path)) => {
            let what = path.display().to_string();
            let f = std::fs::File::open(path).map_err(|source| InputError::Read {
                what: what.clone(),
                source,
            })?;
            read_bounded(f, &what)
        }
        (None, None) => Err(InputError::Missing),
    }
}

/// Reads at most one byte more than the limit, so an endless stream costs no more than that.
fn read_bounded(r: impl Read, what: &str) -> Result<String, InputError> {
    let mut buf = Vec::new();
    r.take(MAX_CONTENT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| InputError::Read {
            what: what.to_owned(),
            source,
        })?;
    if buf.len() > MAX_CONTENT_BYTES {
        return Err(InputError::TooLong {
            what: what.to_owned(),
        });
    }
    String::from_utf8(buf).map_err(|e| InputError::NotText {
        what: what.to_owned(),
        at: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_inclusive_and_one_byte_more_is_refused() {
        let at_limit = vec![b'a'; MAX_CONTENT_BYTES];
        assert_eq!(
            read_bounded(&at_limit[..], "x").unwrap().len(),
            MAX_CONTENT_BYTES
        );
        let over = vec![b'a'; MAX_CONTENT_BYTES + 1];
        let e = read_bounded(&over[..], "stdin").unwrap_err();
        assert!(matches!(e, InputError::TooLong { .. }), "{e}");
        assert!(
            e.to_string().starts_with("stdin is more than 262144 bytes"),
            "{e}"
        );
    }

    #[test]
    fn an_endless_source_is_read_only_to_the_limit() {
        let e = read_bounded(std::io::repeat(b'a'), "stdin").unwrap_err();
        assert!(matches!(e, InputError::TooLong { .. }));
    }

    #[test]
    fn text_that_is_not_utf8_names_the_first_bad_byte() {
        let e = read_bounded(&b"ok \xff"[..], "f.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.txt is not UTF-8 text (byte 3); nothing was sent"
        );
    }

    #[test]
    fn a_file_or_the_argument() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompt.txt");
        std::fs::write(&path, "from a file\n").unwrap();
        assert_eq!(message_text(None, Some(&path)).unwrap(), "from a file\n");
        assert_eq!(message_text(Some("hi"), None).unwrap(), "hi");
        assert!(matches!(message_text(None, None), Err(InputError::Missing)));
        let long = "a".repeat(MAX_CONTENT_BYTES + 1);
        assert!(matches!(
            message_text(Some(&long), None),
            Err(InputError::TooLong { .. })
        ));
        let missing = dir.path().join("nope");
        assert!(matches!(
            message_text(None, Some(&missing)),
            Err(InputError::Read { .. })
        ));
    }
}
