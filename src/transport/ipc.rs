//! The filesystem side of `ipc://` endpoints, checked just before libzmq binds one: the socket's
//! directory must belong to this user and be closed to everyone else (a missing one is created
//! 0700), and a socket file already at the path is removed only when nothing answers on it (a
//! dead instance's). libzmq's own bind unlinks whatever is there, which would silently take the
//! socket from a live server. Paths, modes and one probing connect: no ZeroMQ.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// The mode bits that give group or others any access.
const SHARED_BITS: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error(
        "{endpoint}: an abstract ipc socket has no file permissions, so any local user could connect; use a path in a private directory"
    )]
    Abstract { endpoint: String },
    #[error(
        "{endpoint}: a wildcard ipc socket goes straight into the shared temporary directory; use a path in a private directory"
    )]
    Wildcard { endpoint: String },
    #[error("the ipc socket directory {} is not a directory", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error(
        "the ipc socket directory {} belongs to uid {owner}, not to this user (uid {me}); use a directory of your own (a missing one is created 0700)",
        dir.display()
    )]
    NotOwned { dir: PathBuf, owner: u32, me: u32 },
    #[error(
        "the ipc socket directory {} is open to other users (mode {mode:03o}): they could connect, run tools and read every conversation; `chmod 700` it, or use another directory (a missing one is created 0700)",
        dir.display()
    )]
    Shared { dir: PathBuf, mode: u32 },
    #[error("{} exists and is not a socket; not replacing it", path.display())]
    NotASocket { path: PathBuf },
    #[error(
        "another process is listening on {}; refusing to take the socket from a live server (another zcoord bound to the same endpoint from another data directory?)",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl IpcError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpcError {
        let path = path.to_owned();
        move |source| IpcError::Io { what, path, source }
    }
}

/// What [`prepare`] found at the socket's path.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Not an ipc endpoint: nothing to check.
    NotIpc,
    /// The path is free.
    Free,
    /// A socket nobody listened on was there, and is gone now.
    RemovedStale,
}

/// Makes `endpoint` safe to bind, if it is `ipc://`: its directory private (created 0700 when
/// missing, refused when someone else's or open to others) and no live socket at its path
/// (refused), a dead one removed. A server bound to the same path in between can still lose it
/// to libzmq's unlink; for the default endpoints the data directory's lock rules that out.
pub fn prepare(endpoint: &str) -> Result<Prepared, IpcError> {
    let Some(address) = endpoint.strip_prefix("ipc://") else {
        return Ok(Prepared::NotIpc);
    };
    if address.starts_with('@') {
        return Err(IpcError::Abstract {
            endpoint: endpoint.to_owned(),
        });
    }
    if address.starts_with('*') {
        return Err(IpcError::Wildcard {
            endpoint: endpoint.to_owned(),
        });
    }
    let path = Path::new(address);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    private_dir(dir)?;
    if remove_if_stale(path)? {
        tracing::warn!(path = %path.display(), "removed a stale ipc socket: nothing was listening on it (left by an instance that is gone)");
        return Ok(Prepared::RemovedStale);
    }
    Ok(Prepared::Free)
}

/// For zcoord's own socket directory (`<data-dir>/run`): as [`private_dir`], except that a
/// directory of this user's that is open to others is made 0700 (with a warning) rather than
/// refused, since nothing but zcoord has a reason to be in it. Someone else's directory, or a
/// symlink, is only checked: zcoord changes the mode of no directory it does not own outright.
pub fn own_dir(dir: &Path) -> Result<(), IpcError> {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() && meta.uid() == current_uid() && mode & SHARED_BITS != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(IpcError::io("make private", dir))?;
            tracing::warn!(dir = %dir.display(), was = %format!("{mode:03o}"), "the ipc socket directory was open to other users; made it 0700");
        }
    }
    private_dir(dir)
}

/// Creates `dir` 0700 if it is missing (parents as the umask says), else checks that it is a
/// directory of this user's that neither group nor others can enter.
pub fn private_dir(dir: &Path) -> Result<(), IpcError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_private(dir),
        Err(e) => return Err(IpcError::io("inspect", dir)(e)),
    };
    if !meta.is_dir() {
        return Err(IpcError::NotADirectory {
            dir: dir.to_owned(),
        });
    }
    let me = current_uid();
    if meta.uid() != me {
        return Err(IpcError::NotOwned {
            dir: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & SHARED_BITS != 0 {
        return Err(IpcError::Shared {
            dir: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn create_private(dir: &Path) -> Result<(), IpcError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(IpcError::io("create", parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Created in between by someone: it gets checked like any existing directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return private_dir(dir),
        Err(e) => return Err(IpcError::io("create", dir)(e)),
    }
    // The umask can only take bits away; 0700 exactly, so the owner can always bind in it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(IpcError::io("make private", dir))
}

/// Removes a socket file nobody listens on; true if it did. A live one, or anything that is not
/// a socket, is refused and left alone.
fn remove_if_stale(path: &Path) -> Result<bool, IpcError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(IpcError::io("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(IpcError::NotASocket {
            path: path.to_owned(),
        });
    }
    match probe(path).map_err(IpcError::io("probe the socket", path))? {
        Probe::Listening => Err(IpcError::InUse {
            path: path.to_owned(),
        }),
        Probe::Gone => Ok(false),
        Probe::Dead => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(IpcError::io("remove the stale socket", path)(e)),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Something accepted the connection, or would (its backlog is full): a live server.
    Listening,
    /// The file is there but nobody listens: left by a process that is gone.
    Dead,
    /// The file went away meanwhile.
    Gone,
}

/// One non-blocking connect: it never waits, even on a listener that is stopped (SIGSTOP) with
/// a full backlog. The connection, if made, is closed at once.
fn probe(path: &Path) -> io::Result<Probe> {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::connect(&sock, &addr) {
        Ok(()) => Ok(Probe::Listening),
        Err(Errno::AGAIN | Errno::INPROGRESS) => Ok(Probe::Listening),
        Err(Errno::CONNREFUSED) => Ok(Probe::Dead),
        Err(Errno::NOENT) => Ok(Probe::Gone),
        Err(e) => Err(e.into()),
    }
}

fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A temporary directory closed to others (tempfile creates them as the umask says).
    fn private_tmp() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o700);
        tmp
    }

    fn ep(p: &Path) -> String {
        format!("ipc://{}", p.display())
    }

    #[test]
    fn other_transports_are_not_touched() {
        assert_eq!(prepare("tcp://127.0.0.1:0").unwrap(), Prepared::NotIpc);
        assert_eq!(prepare("inproc://x").unwrap(), Prepared::NotIpc);
    }

    #[test]
    fn a_missing_directory_is_created_0700_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        assert_eq!(prepare(&ep(&dir.join("rpc.sock"))).unwrap(), Prepared::Free);
        assert_eq!(mode_of(&dir), 0o700);
    }

    #[test]
    fn a_directory_open_to_others_is_refused_and_left_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o755, 0o777, 0o1777, 0o710, 0o701] {
            let dir = tmp.path().join(format!("shared{mode:o}"));
            fs::create_dir(&dir).unwrap();
            chmod(&dir, mode);
            let err = prepare(&ep(&dir.join("rpc.sock"))).unwrap_err();
            assert!(matches!(err, IpcError::Shared { .. }), "{mode:o}: {err}");
            let text = err.to_string();
            assert!(text.contains(&dir.display().to_string()), "{text}");
            assert!(text.contains(&format!("{mode:03o}")), "{text}");
            assert!(text.contains("chmod 700"), "{text}");
            assert_eq!(mode_of(&dir), mode, "not changed");
        }
        let private = tmp.path().join("private");
        fs::create_dir(&private).unwrap();
        chmod(&private, 0o700);
        assert_eq!(
            prepare(&ep(&private.join("rpc.sock"))).unwrap(),
            Prepared::Free
        );
    }

    #[test]
    fn zcoords_own_directory_is_tightened_instead() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        fs::create_dir(&run).unwrap();
        chmod(&run, 0o755);
        own_dir(&run).unwrap();
        assert_eq!(mode_of(&run), 0o700);
        let missing = tmp.path().join("new/run");
        own_dir(&missing).unwrap();
        assert_eq!(mode_of(&missing), 0o700);
    }

    #[test]
    fn a_symlinked_run_directory_is_checked_not_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        chmod(&target, 0o755);
        let run = tmp.path().join("run");
        std::os::unix::fs::symlink(&target, &run).unwrap();
        assert!(matches!(own_dir(&run), Err(IpcError::Shared { .. })));
        assert_eq!(mode_of(&target), 0o755);
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        // Only root can give a directory away; elsewhere this test has nothing to set up.
        if current_uid() != 0 {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let err = prepare(&ep(&dir.join("rpc.sock"))).unwrap_err();
        assert!(
            matches!(err, IpcError::NotOwned { owner: 65534, .. }),
            "{err}"
        );
        assert!(matches!(own_dir(&dir), Err(IpcError::NotOwned { .. })));
    }

    #[test]
    fn a_stale_socket_is_removed_and_a_live_one_is_refused() {
        let tmp = private_tmp();
        let path = tmp.path().join("rpc.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "dropping a listener leaves its file");
        assert_eq!(prepare(&ep(&path)).unwrap(), Prepared::RemovedStale);
        assert!(!path.exists());

        let live = UnixListener::bind(&path).unwrap();
        let err = prepare(&ep(&path)).unwrap_err();
        assert!(matches!(err, IpcError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(path.exists(), "a live socket is left where it is");
        drop(live);
    }

    #[test]
    fn a_listener_with_a_full_backlog_counts_as_live_and_the_probe_never_waits() {
        let tmp = private_tmp();
        let path = tmp.path().join("rpc.sock");
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&listener, 1).unwrap();
        // Nobody accepts: the first probes fill the backlog; the later ones must not block.
        for _ in 0..20 {
            assert_eq!(probe(&path).unwrap(), Probe::Listening);
        }
        drop(listener);
        assert_eq!(probe(&path).unwrap(), Probe::Dead);
    }

    #[test]
    fn what_is_not_a_socket_is_never_removed() {
        let tmp = private_tmp();
        let path = tmp.path().join("notes.txt");
        fs::write(&path, "keep me").unwrap();
        assert!(matches!(
            prepare(&ep(&path)),
            Err(IpcError::NotASocket { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn abstract_and_wildcard_endpoints_are_refused() {
        assert!(matches!(
            prepare("ipc://@zcoord"),
            Err(IpcError::Abstract { .. })
        ));
        assert!(matches!(prepare("ipc://*"), Err(IpcError::Wildcard { .. })));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("run");
        fs::write(&file, "").unwrap();
        assert!(matches!(
            prepare(&ep(&file.join("rpc.sock"))),
            Err(IpcError::NotADirectory { .. })
        ));
    }
}
