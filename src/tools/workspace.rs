//! Confinement to the workspace directory: turns a path a model gave into an open directory and a
//! name in it, never leaving the workspace. Owns the rules, not the file operations (`files.rs`).
//!
//! The path is resolved one component at a time from a descriptor of the workspace root opened at
//! start-up, with `openat`/`statat` relative to the directory reached so far, so no step goes
//! through a path the kernel resolves on its own:
//! - absolute paths are refused; `..` goes back up the directories this walk came down, and going
//!   above the root is refused;
//! - a symlink is read (`readlinkat`) and its target walked the same way: a relative target from
//!   the link's directory, an absolute one only when it lies under the root's canonical path.
//!   So symlinks that stay inside work and any that lead out are refused, a symlinked parent
//!   directory included; at most 40 are followed per path;
//! - every directory is opened with `O_NOFOLLOW | O_DIRECTORY`, so one swapped for a symlink after
//!   it was checked makes the open fail instead of leaving the workspace; callers open the last
//!   component with `O_NOFOLLOW` too (`files.rs`), for the same reason;
//! - a walk holds one directory open at a time (a deep path must not cost a descriptor a level:
//!   descriptors are the sockets' too) and goes at most 256 directories deep.
//!
//! Hard links and bind mounts are not detected: they are the workspace's contents.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::error::ToolError;

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// Longest path a tool accepts, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Deepest a path may go below the root, in directories (and most directories one `write_file`
/// creates): bounds the work of a walk.
pub const MAX_DEPTH: usize = 256;

/// The workspace could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("workspace {}: {source}", path.display())]
pub struct WorkspaceError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The directory the file tools are confined to. Cloning shares the open root.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Canonical: no symlinks, no `..`; absolute symlink targets are compared with it.
    root: PathBuf,
    /// Opened once: every walk starts here, even if the path above it changes later.
    dir: Arc<OwnedFd>,
}

/// What a missing last component means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// It must exist (reading, listing).
    Refuse,
    /// It may be missing (writing); missing parent directories are created when `create_parents`.
    Allow { create_parents: bool },
}

/// Where a path leads, inside the workspace.
#[derive(Debug)]
pub enum Target {
    /// A directory the path itself ends in (`.`, `sub/`, `sub/..`), opened.
    Dir(OwnedFd),
    /// The entry `name` in the opened directory `parent`, which is not a symlink: its `stat`, or
    /// `None` when it does not exist.
    Entry {
        parent: OwnedFd,
        name: CString,
        stat: Option<Stat>,
    },
}

impl Workspace {
    /// Opens `path` (canonicalized) as the root.
    pub fn open(path: &Path) -> Result<Workspace, WorkspaceError> {
        let fail = |source| WorkspaceError {
            path: path.to_owned(),
            source,
        };
        let root = std::fs::canonicalize(path).map_err(fail)?;
        let dir = rustix::fs::open(
            &root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        Ok(Workspace {
            root,
            dir: Arc::new(dir),
        })
    }

    /// The canonical root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` (relative to the root) without leaving the workspace; see the module doc.
    pub fn resolve(&self, path: &str, missing: Missing) -> Result<Target, ToolError> {
        let refuse = |why: &str| Err(ToolError::BadPath(path.to_owned(), why.to_owned()));
        if path.is_empty() {
            return refuse("the path is empty");
        }
        if path.starts_with('/') {
            return Err(ToolError::Absolute(path.to_owned()));
        }
        if path.len() > MAX_PATH_BYTES {
            return refuse("the path is longer than 4096 bytes");
        }
        if path.contains('\0') {
            return refuse("the path contains a NUL character");
        }
        let io = |e: Errno| ToolError::Io(path.to_owned(), e.into());
        let mut queue: VecDeque<Vec<u8>> = components(path.as_bytes());
        // Refused before anything is created; the walk checks again, symlinks included.
        if lexical_depth(&queue) > MAX_DEPTH {
            return refuse("more than 256 directories deep");
        }
        let mut walk = Walk::start(self, path)?;
        let mut links = 0;
        let mut created = 0;
        while let Some(comp) = queue.pop_front() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    walk.up()?;
                    continue;
                }
                _ => {}
            }
            let last = queue.is_empty();
            // No NUL: the path was checked, and symlink targets cannot hold one.
            let name = CString::new(comp)
                .map_err(|_| ToolError::BadPath(path.to_owned(), "NUL".into()))?;
            let stat = match rustix::fs::statat(&walk.dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => match missing {
                    Missing::Allow { .. } if last => {
                        return Ok(Target::Entry {
                            parent: walk.dir,
                            name,
                            stat: None,
                        });
                    }
                    Missing::Allow {
                        create_parents: true,
                    } if created < MAX_DEPTH => {
                        match rustix::fs::mkdirat(&walk.dir, &name, Mode::from_raw_mode(0o777)) {
                            Ok(()) | Err(Errno::EXIST) => created += 1,
                            Err(e) => return Err(io(e)),
                        }
                        // Walk it again: whatever is there now is checked like anything else.
                        queue.push_front(name.into_bytes());
                        continue;
                    }
                    _ => return Err(ToolError::NotFound(path.to_owned())),
                },
                Err(e) => return Err(io(e)),
            };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return refuse("more than 40 symlinks on the way");
                    }
                    let target =
                        rustix::fs::readlinkat(&walk.dir, &name, Vec::new()).map_err(io)?;
                    let target = target.as_bytes();
                    let rest = match target.strip_prefix(b"/") {
                        None => target,
                        Some(_) => match self.strip_root(target) {
                            Some(rest) => {
                                walk.back_to_root()?;
                                rest
                            }
                            None => return Err(symlink_escapes(path, &name)),
                        },
                    };
                    let mut more = components(rest);
                    more.extend(queue);
                    queue = more;
                    // A `..` in the target that would climb above the root is an escape too.
                    if escapes_at_root(&queue, walk.depth()) {
                        return Err(symlink_escapes(path, &name));
                    }
                }
                FileType::Directory if !last => walk.down(name)?,
                _ if last => {
                    return Ok(Target::Entry {
                        parent: walk.dir,
                        name,
                        stat: Some(stat),
                    });
                }
                _ => return Err(ToolError::NotADirectory(path.to_owned())),
            }
        }
        Ok(Target::Dir(walk.dir))
    }

    /// The part of an absolute symlink target under the root, if it is under the root.
    fn strip_root<'a>(&self, target: &'a [u8]) -> Option<&'a [u8]> {
        use std::os::unix::ffi::OsStrExt;
        let root = self.root.as_os_str().as_bytes();
        let rest = target.strip_prefix(root)?;
        if root == b"/" {
            return Some(rest);
        }
        match rest.first() {
            None => Some(rest),
            Some(b'/') => Some(&rest[1..]),
            Some(_) => None,
        }
    }
}

/// Where a walk has got to: the directory, open, and the names that lead to it from the root.
/// One descriptor at a time, however deep the path: `..` opens the names again from the root
/// (never `..` on disk), each with `O_NOFOLLOW | O_DIRECTORY`, so it goes back up the way the
/// walk came down and never above the root.
struct Walk<'a> {
    ws: &'a Workspace,
    /// For messages.
    path: &'a str,
    names: Vec<CString>,
    dir: OwnedFd,
}

impl<'a> Walk<'a> {
    fn start(ws: &'a Workspace, path: &'a str) -> Result<Walk<'a>, ToolError> {
        let dir = ws
            .dir
            .try_clone()
            .map_err(|e| ToolError::Io(path.to_owned(), e))?;
        Ok(Walk {
            ws,
            path,
            names: Vec::new(),
            dir,
        })
    }

    /// How many directories below the root.
    fn depth(&self) -> usize {
        self.names.len()
    }

    fn down(&mut self, name: CString) -> Result<(), ToolError> {
        if self.names.len() >= MAX_DEPTH {
            return Err(ToolError::BadPath(
                self.path.to_owned(),
                format!("more than {MAX_DEPTH} directories deep"),
            ));
        }
        self.dir = open_dir(&self.dir, &name, self.path)?;
        self.names.push(name);
        Ok(())
    }

    fn up(&mut self) -> Result<(), ToolError> {
        if self.names.pop().is_none() {
            return Err(ToolError::Escapes(self.path.to_owned()));
        }
        let names = std::mem::take(&mut self.names);
        self.back_to_root()?;
        for name in names {
            self.down(name)?;
        }
        Ok(())
    }

    fn back_to_root(&mut self) -> Result<(), ToolError> {
        self.names.clear();
        self.dir = self
            .ws
            .dir
            .try_clone()
            .map_err(|e| ToolError::Io(self.path.to_owned(), e))?;
        Ok(())
    }
}

/// Opens the directory `name` in `dir`, not following a symlink: one swapped in after the check
/// fails the open (`ELOOP`, `ENOTDIR`) instead of leading anywhere.
fn open_dir(dir: &OwnedFd, name: &CString, path: &str) -> Result<OwnedFd, ToolError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR | Errno::NOENT => ToolError::Changed(path.to_owned()),
        e => ToolError::Io(path.to_owned(), e.into()),
    })
}

/// `path` split at `/`, empty and `.` components left for the walk to skip.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect()
}

/// The deepest the components go below the root, symlinks aside.
fn lexical_depth(queue: &VecDeque<Vec<u8>>) -> usize {
    let mut depth: usize = 0;
    let mut deepest = 0;
    for comp in queue {
        match comp.as_slice() {
            b"" | b"." => {}
            b".." => depth = depth.saturating_sub(1),
            _ => {
                depth += 1;
                deepest = deepest.max(depth);
            }
        }
    }
    deepest
}

/// Whether the leading `..`s of `queue` climb above the root from a walk `depth` directories
/// below it. Only the leading ones: a later `..` is checked when the walk reaches it.
fn escapes_at_root(queue: &VecDeque<Vec<u8>>, depth: usize) -> bool {
    let mut depth = depth;
    for comp in queue {
        match comp.as_slice() {
            b"" | b"." => {}
            b".." if depth == 0 => return true,
            b".." => depth -= 1,
            _ => return false,
        }
    }
    false
}

fn symlink_escapes(path: &str, link: &CString) -> ToolError {
    ToolError::SymlinkEscapes(
        path.to_owned(),
        String::from_utf8_lossy(link.as_bytes()).into_owned(),
    )
}

/// What kind of file `stat` describes, as a message names it.
pub fn kind(stat: &Stat) -> &'static str {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of an unknown kind",
    }
}

pub fn is_regular(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
}

pub fn is_dir(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}
