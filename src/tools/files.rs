//! The file tools: `read_file`, `list_dir` (read-only) and `write_file`, each bounded, each
//! reaching files only through [`Workspace::resolve`] and opening the last component with
//! `O_NOFOLLOW`. Blocking: the registry runs them on the blocking pool.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ToolError;
use super::workspace::{is_dir, is_regular, kind, Missing, Target, Workspace};
use super::{ToolDef, LIST_DIR, READ_FILE, WRITE_FILE};

/// Most bytes one `read_file` returns.
pub const MAX_READ_BYTES: usize = 256 << 10;
/// Most entries one `list_dir` shows.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Most bytes one `write_file` writes.
pub const MAX_WRITE_BYTES: usize = 1 << 20;

/// The file tools as offered to a model.
pub fn definitions() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: READ_FILE,
            description:
                "Reads a text file of the workspace. Returns lines `offset` (counted from \
                1, default 1) on, at most `limit` of them (default: to the end), exactly as in the \
                file. At most 256 KiB a read: more is an error that says how many lines fit.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "relative to the workspace"},
                    "offset": {"type": "integer", "minimum": 1},
                    "limit": {"type": "integer", "minimum": 1}
                },
                "required": ["path"]
            }),
        },
        ToolDef {
            name: LIST_DIR,
            description: "Lists a directory of the workspace (default: its top), one entry a \
                line sorted by name: `name/` a directory, `name@` a symlink, `name` a file. At \
                most 1000 entries; a last line says when there are more.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "relative to the workspace"}
                }
            }),
        },
        ToolDef {
            name: WRITE_FILE,
            description: "Creates or replaces a file of the workspace with `content` (at most \
                1 MiB), atomically; missing parent directories are created.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "relative to the workspace"},
                    "content": {"type": "string"}
                },
                "required": ["path", "content"]
            }),
        },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

pub(super) fn parse<T: DeserializeOwned>(tool: &'static str, args: Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::args(tool, e))
}

/// `read_file {path, offset?, limit?}`: lines `offset` (from 1) on, at most `limit` of them, as
/// the file has them (newlines kept; bytes that are not UTF-8 become U+FFFD). More than
/// [`MAX_READ_BYTES`] is an error saying how many lines would fit.
pub fn read_file(ws: &Workspace, args: Value) -> Result<String, ToolError> {
    let a: ReadArgs = parse("read_file", args)?;
    let offset = a.offset.unwrap_or(1);
    if offset == 0 {
        return Err(ToolError::args("read_file", "offset counts lines from 1"));
    }
    if a.limit == Some(0) {
        return Err(ToolError::args("read_file", "limit must be at least 1"));
    }
    let file = open_read(ws.resolve(&a.path, Missing::Refuse)?, &a.path)?;
    let reader = BufReader::with_capacity(64 << 10, file);
    let io = |e| ToolError::Io(a.path.clone(), e);
    match read_lines(reader, offset, a.limit, MAX_READ_BYTES).map_err(io)? {
        Lines::Text(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Lines::PastEnd { lines } => Err(ToolError::args(
            "read_file",
            format!(
                "offset {offset} is past the end of {} ({lines} lines)",
                a.path
            ),
        )),
        Lines::TooLong { fit: 0 } => Err(ToolError::TooLarge(format!(
            "{}: line {offset} alone is longer than {MAX_READ_BYTES} bytes (256 KiB), the most \
             one read returns",
            a.path
        ))),
        Lines::TooLong { fit } => Err(ToolError::TooLarge(format!(
            "{}: the lines asked for are more than {MAX_READ_BYTES} bytes (256 KiB), the most one \
             read returns; lines {offset} to {} fit: read them with offset {offset} and limit \
             {fit}, then go on from offset {}",
            a.path,
            offset + fit - 1,
            offset + fit
        ))),
    }
}

/// Opens the regular file `target` for reading; anything else is refused before it is opened,
/// and again if it changed into something else by the time it is.
pub(super) fn open_read(target: Target, path: &str) -> Result<File, ToolError> {
    let (parent, name) = match target {
        Target::Dir(_) => return Err(ToolError::NotRegular(path.to_owned(), "directory")),
        Target::Entry { stat: None, .. } => return Err(ToolError::NotFound(path.to_owned())),
        Target::Entry { stat: Some(st), .. } if !is_regular(&st) => {
            return Err(ToolError::NotRegular(path.to_owned(), kind(&st)))
        }
        Target::Entry { parent, name, .. } => (parent, name),
    };
    // NONBLOCK: a fifo swapped in after the check must not hang the open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = rustix::fs::openat(&parent, &name, flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| opened(path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ToolError::Io(path.to_owned(), e.into()))?;
    if !is_regular(&st) {
        return Err(ToolError::NotRegular(path.to_owned(), kind(&st)));
    }
    Ok(File::from(fd))
}

/// An error opening the last component: `ELOOP` there means a symlink took its place.
fn opened(path: &str, e: Errno) -> ToolError {
    match e {
        Errno::LOOP => ToolError::Changed(path.to_owned()),
        e => ToolError::Io(path.to_owned(), e.into()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Lines {
    Text(Vec<u8>),
    /// The file ends before line `offset`; it has `lines` lines.
    PastEnd {
        lines: u64,
    },
    /// The lines asked for pass the cap; the first `fit` of them fit.
    TooLong {
        fit: u64,
    },
}

/// Reads lines `offset..` (at most `limit`) with at most `max` bytes in memory, however long the
/// file or its lines.
fn read_lines(
    mut r: impl BufRead,
    offset: u64,
    limit: Option<u64>,
    max: usize,
) -> io::Result<Lines> {
    let mut line = 1;
    let mut in_line = false;
    while line < offset {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            let lines = if in_line { line } else { line - 1 };
            return Ok(Lines::PastEnd { lines });
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                line += 1;
                in_line = false;
            }
            None => {
                let n = buf.len();
                r.consume(n);
                in_line = true;
            }
        }
    }
    let mut out = Vec::new();
    let mut taken = 0;
    while limit.is_none_or(|l| taken < l) {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (n, ends_line) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + n > max {
            return Ok(Lines::TooLong { fit: taken });
        }
        out.extend_from_slice(&buf[..n]);
        r.consume(n);
        if ends_line {
            taken += 1;
        }
    }
    if offset > 1 && out.is_empty() {
        return Ok(Lines::PastEnd { lines: offset - 1 });
    }
    Ok(Lines::Text(out))
}

/// `list_dir {path?}`: the entries of a directory (default: the root), sorted by name, one a
/// line: `name/` a directory, `name@` a symlink (not followed), `name` a regular file, and
/// `name (fifo)` and the like for the rest. At most [`MAX_LIST_ENTRIES`], the first by name,
/// then a line saying how many there are.
pub fn list_dir(ws: &Workspace, args: Value) -> Result<String, ToolError> {
    let a: ListArgs = parse("list_dir", args)?;
    let path = match a.path.as_deref() {
        None | Some("") => ".",
        Some(p) => p,
    };
    let dir = open_dir(ws.resolve(path, Missing::Refuse)?, path)?;
    let io = |e: Errno| ToolError::Io(path.to_owned(), e.into());
    let mut dir = Dir::new(dir).map_err(io)?;
    let mut shown: BTreeMap<Vec<u8>, FileType> = BTreeMap::new();
    let mut total: u64 = 0;
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        total += 1;
        if shown.len() == MAX_LIST_ENTRIES
            && shown
                .last_key_value()
                .is_some_and(|(k, _)| name >= k.as_slice())
        {
            continue;
        }
        let file_type = match entry.file_type() {
            FileType::Unknown => rustix::fs::statat(
                dir.fd().map_err(io)?,
                entry.file_name(),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map(|st| FileType::from_raw_mode(st.st_mode))
            .unwrap_or(FileType::Unknown),
            t => t,
        };
        shown.insert(name.to_vec(), file_type);
        if shown.len() > MAX_LIST_ENTRIES {
            shown.pop_last();
        }
    }
    let mut out = String::new();
    for (name, file_type) in &shown {
        out.push_str(&display_name(name));
        out.push_str(match file_type {
            FileType::Directory => "/",
            FileType::Symlink => "@",
            FileType::RegularFile => "",
            FileType::Fifo => " (fifo)",
            FileType::Socket => " (socket)",
            FileType::CharacterDevice => " (character device)",
            FileType::BlockDevice => " (block device)",
            FileType::Unknown => " (unknown kind)",
        });
        out.push('\n');
    }
    if total > shown.len() as u64 {
        out.push_str(&format!(
            "[{} of {total} entries shown: the first by name]\n",
            shown.len()
        ));
    }
    Ok(out)
}

/// Opens the directory `target`.
fn open_dir(target: Target, path: &str) -> Result<std::os::fd::OwnedFd, ToolError> {
    match target {
        Target::Dir(fd) => Ok(fd),
        Target::Entry { stat: None, .. } => Err(ToolError::NotFound(path.to_owned())),
        Target::Entry { stat: Some(st), .. } if !is_dir(&st) => {
            Err(ToolError::NotDir(path.to_owned(), kind(&st)))
        }
        Target::Entry { parent, name, .. } => {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            rustix::fs::openat(&parent, &name, flags, Mode::empty()).map_err(|e| match e {
                Errno::NOTDIR => ToolError::Changed(path.to_owned()),
                e => opened(path, e),
            })
        }
    }
}

/// A name as shown: lossy UTF-8, and quoted with escapes when it holds control characters (a
/// newline in a name must not pass for two entries).
fn display_name(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text.into_owned()
    }
}

/// `write_file {path, content}`: creates or replaces the regular file `path` with `content` (at
/// most [`MAX_WRITE_BYTES`]), creating missing parent directories. Atomic: the content goes to
/// a new file in the same directory, which is then renamed over the target, so a reader sees the
/// old file or the new one, and a symlink or hard link at the target is replaced, never written
/// through. A replaced file keeps its permission bits.
pub fn write_file(ws: &Workspace, args: Value) -> Result<String, ToolError> {
    let a: WriteArgs = parse("write_file", args)?;
    if a.content.len() > MAX_WRITE_BYTES {
        return Err(ToolError::TooLarge(format!(
            "content is {} bytes; write_file writes at most {MAX_WRITE_BYTES} bytes (1 MiB)",
            a.content.len()
        )));
    }
    let target = ws.resolve(
        &a.path,
        Missing::Allow {
            create_parents: true,
        },
    )?;
    write_at(target, &a.path, a.content.as_bytes())
}

/// The second half of `write_file`, once the path is resolved.
pub(super) fn write_at(target: Target, path: &str, content: &[u8]) -> Result<String, ToolError> {
    let (parent, name, existing) = match target {
        Target::Dir(_) => return Err(ToolError::NotRegular(path.to_owned(), "directory")),
        Target::Entry { parent, name, stat } => (parent, name, stat),
    };
    if let Some(st) = &existing {
        if !is_regular(st) {
            return Err(ToolError::NotRegular(path.to_owned(), kind(st)));
        }
    }
    let temp = CString::new(format!(
        ".zcoord-write-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ))
    .expect("no NUL in a uuid");
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&parent, &temp, flags, Mode::from_raw_mode(0o666))
        .map_err(|e| ToolError::Io(path.to_owned(), e.into()))?;
    let written = (|| -> io::Result<()> {
        let mut file = File::from(fd);
        file.write_all(content)?;
        if let Some(st) = &existing {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(st.st_mode & 0o777))?;
        }
        file.sync_all()?;
        rustix::fs::renameat(&parent, &temp, &parent, &name)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&parent, &temp, AtFlags::empty());
        return Err(match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::ISDIR) | Some(Errno::NOTEMPTY) => {
                ToolError::NotRegular(path.to_owned(), "directory")
            }
            _ => ToolError::Io(path.to_owned(), e),
        });
    }
    let verb = if existing.is_some() {
        "replaced"
    } else {
        "created"
    };
    Ok(format!("{verb} {path} ({} bytes)", content.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, offset: u64, limit: Option<u64>, max: usize) -> Lines {
        read_lines(text.as_bytes(), offset, limit, max).unwrap()
    }

    fn text(s: &str) -> Lines {
        Lines::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_are_counted_from_one_and_kept_as_they_are() {
        let file = "one\ntwo\nthree\n";
        let table: &[(u64, Option<u64>, usize, Lines)] = &[
            (1, None, 100, text(file)),
            (2, None, 100, text("two\nthree\n")),
            (2, Some(1), 100, text("two\n")),
            (3, Some(5), 100, text("three\n")),
            (4, None, 100, Lines::PastEnd { lines: 3 }),
            (9, None, 100, Lines::PastEnd { lines: 3 }),
            (1, None, 14, text(file)),
            (1, None, 13, Lines::TooLong { fit: 2 }),
            (1, Some(2), 8, text("one\ntwo\n")),
            (2, None, 3, Lines::TooLong { fit: 0 }),
        ];
        for (offset, limit, max, want) in table {
            assert_eq!(
                &lines(file, *offset, *limit, *max),
                want,
                "{offset} {limit:?} {max}"
            );
        }
        assert_eq!(lines("a\nb", 2, None, 10), text("b"));
        assert_eq!(lines("a\nb", 3, None, 10), Lines::PastEnd { lines: 2 });
        assert_eq!(lines("", 1, None, 10), text(""));
        assert_eq!(lines("", 2, None, 10), Lines::PastEnd { lines: 0 });
    }

    #[test]
    fn a_long_line_is_never_held_whole() {
        // Through a 16-byte buffer, a 1 MiB line is refused after at most `max` + 16 bytes.
        let long = "x".repeat(1 << 20);
        let r = BufReader::with_capacity(16, long.as_bytes());
        assert_eq!(
            read_lines(r, 1, None, 64).unwrap(),
            Lines::TooLong { fit: 0 }
        );
    }

    #[test]
    fn names_with_control_characters_are_quoted() {
        assert_eq!(display_name(b"plain.txt"), "plain.txt");
        assert_eq!(display_name(b"two\nlines"), "\"two\\nlines\"");
        assert_eq!(display_name(b"bad\xffutf8"), "bad\u{fffd}utf8");
    }
}
