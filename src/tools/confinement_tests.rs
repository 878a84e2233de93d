//! The confinement table: every way out of the workspace the issue names (`..`, absolute paths,
//! symlinks out, symlinked parent directories, a symlink swapped in as the target, device files,
//! fifos, sockets, oversized reads and writes) ends the call with an error saying why, and
//! nothing outside is read or written; and the ways that stay inside work.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::files::{open_read, write_at};
use super::workspace::Missing;
use super::*;

const SECRET: &str = "TOP SECRET, outside the workspace\n";

/// `base/outside/` (a secret file and an empty directory) beside `base/ws/`, the workspace.
struct Fixture {
    _base: tempfile::TempDir,
    outside: PathBuf,
    ws: PathBuf,
    tools: Tools,
}

fn fixture() -> Fixture {
    let base = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(base.path()).unwrap();
    let outside = root.join("outside");
    let ws = root.join("ws");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), SECRET).unwrap();
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::create_dir_all(ws.join("deep/er")).unwrap();
    std::fs::write(ws.join("file.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(ws.join("sub/inner.txt"), "inner\n").unwrap();
    let line = format!("{}\n", "x".repeat(99));
    std::fs::write(ws.join("big.txt"), line.repeat(3000)).unwrap(); // 300,000 bytes
    std::fs::write(ws.join("sub/long_line.txt"), "y".repeat(300 << 10)).unwrap();
    let links: &[(&str, PathBuf)] = &[
        ("link_in", "sub/inner.txt".into()),
        ("abs_in", ws.join("file.txt")),
        ("sub_link", "sub".into()),
        ("deep/er/up_in", "../../file.txt".into()),
        ("link_out", "../outside/secret".into()),
        ("abs_out", outside.join("secret")),
        ("dir_out", "../outside".into()),
        ("abs_dir_out", outside.join("dir")),
        ("deep/er/up_out", "../../../outside/secret".into()),
        (
            "root_prefix_out",
            PathBuf::from(format!("{}2/x", ws.display())),
        ),
        ("loop_a", "loop_b".into()),
        ("loop_b", "loop_a".into()),
        ("dangling_out", "../outside/not_there".into()),
    ];
    for (name, target) in links {
        symlink(target, ws.join(name)).unwrap();
    }
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        ws.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let sock = std::os::unix::net::UnixListener::bind(ws.join("sock")).unwrap();
    std::mem::forget(sock); // the socket file stays; the listener is not needed
    let tools = Tools::new(&ToolsConfig {
        workspace: ws.clone(),
        run_command: false,
    })
    .unwrap();
    Fixture {
        _base: base,
        outside,
        ws,
        tools,
    }
}

/// Everything under `dir`, with file contents, for comparing before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
                out.push((p, None));
            } else if meta.is_file() {
                out.push((p.clone(), std::fs::read(&p).ok()));
            } else {
                // A fifo would block the read: its name is enough.
                out.push((p, None));
            }
        }
    }
    out.sort();
    out
}

enum Want {
    /// A result containing this.
    Ok(&'static str),
    /// An error result containing this.
    Err(&'static str),
}

#[tokio::test]
async fn the_confinement_table() {
    let f = fixture();
    let abs_secret = format!("{}", f.outside.join("secret").display());
    let abs_in_ws = format!("{}", f.ws.join("file.txt").display());
    let huge = "z".repeat(MAX_WRITE_BYTES + 1);
    let table: Vec<(&str, serde_json::Value, Want)> = vec![
        // `..`
        ("read_file", json!({"path": "../outside/secret"}), Want::Err("leads out of the workspace")),
        ("read_file", json!({"path": "sub/../../outside/secret"}), Want::Err("leads out of the workspace")),
        ("read_file", json!({"path": ".."}), Want::Err("leads out of the workspace")),
        ("list_dir", json!({"path": ".."}), Want::Err("leads out of the workspace")),
        ("write_file", json!({"path": "../outside/new", "content": "x"}), Want::Err("leads out of the workspace")),
        ("write_file", json!({"path": "../new", "content": "x"}), Want::Err("leads out of the workspace")),
        // absolute paths, even into the workspace
        ("read_file", json!({"path": abs_secret}), Want::Err("absolute paths are refused")),
        ("read_file", json!({"path": abs_in_ws}), Want::Err("absolute paths are refused")),
        ("list_dir", json!({"path": "/"}), Want::Err("absolute paths are refused")),
        ("write_file", json!({"path": "/tmp/zcoord-should-not-exist", "content": "x"}), Want::Err("absolute paths are refused")),
        // symlinks out: relative, absolute, from a subdirectory, sharing the root's prefix
        ("read_file", json!({"path": "link_out"}), Want::Err("the symlink \"link_out\" leads out")),
        ("read_file", json!({"path": "abs_out"}), Want::Err("the symlink \"abs_out\" leads out")),
        ("read_file", json!({"path": "deep/er/up_out"}), Want::Err("the symlink \"up_out\" leads out")),
        ("read_file", json!({"path": "root_prefix_out"}), Want::Err("leads out")),
        ("write_file", json!({"path": "link_out", "content": "pwned"}), Want::Err("leads out")),
        ("write_file", json!({"path": "dangling_out", "content": "pwned"}), Want::Err("leads out")),
        // symlinked parent directories that lead out
        ("read_file", json!({"path": "dir_out/secret"}), Want::Err("the symlink \"dir_out\" leads out")),
        ("list_dir", json!({"path": "dir_out"}), Want::Err("leads out")),
        ("list_dir", json!({"path": "abs_dir_out"}), Want::Err("leads out")),
        ("write_file", json!({"path": "dir_out/new", "content": "x"}), Want::Err("leads out")),
        ("write_file", json!({"path": "abs_dir_out/new/deeper", "content": "x"}), Want::Err("leads out")),
        // fifos, sockets (device files: see `devices_are_refused`), directories, loops
        ("read_file", json!({"path": "fifo"}), Want::Err("is a fifo, not a regular file")),
        ("write_file", json!({"path": "fifo", "content": "x"}), Want::Err("is a fifo, not a regular file")),
        ("read_file", json!({"path": "sock"}), Want::Err("is a socket, not a regular file")),
        ("write_file", json!({"path": "sock", "content": "x"}), Want::Err("is a socket")),
        ("read_file", json!({"path": "sub"}), Want::Err("is a directory, not a regular file")),
        ("write_file", json!({"path": "sub", "content": "x"}), Want::Err("is a directory")),
        ("write_file", json!({"path": ".", "content": "x"}), Want::Err("is a directory")),
        ("list_dir", json!({"path": "file.txt"}), Want::Err("is a regular file, not a directory")),
        ("read_file", json!({"path": "loop_a"}), Want::Err("more than 40 symlinks")),
        ("read_file", json!({"path": "file.txt/x"}), Want::Err("not a directory")),
        ("read_file", json!({"path": "missing"}), Want::Err("no such file or directory")),
        ("read_file", json!({"path": ""}), Want::Err("the path is empty")),
        ("read_file", json!({"path": "a\u{0}b"}), Want::Err("NUL")),
        ("read_file", json!({"path": "x/".repeat(2049)}), Want::Err("longer than 4096 bytes")),
        ("write_file", json!({"path": format!("deep/{}f", "d/".repeat(300)), "content": "x"}), Want::Err("more than 256 directories deep")),
        // oversized reads and writes
        ("read_file", json!({"path": "big.txt"}), Want::Err("lines 1 to 2621 fit: read them with offset 1 and limit 2621, then go on from offset 2622")),
        ("read_file", json!({"path": "sub/long_line.txt"}), Want::Err("line 1 alone is longer than 262144 bytes")),
        ("write_file", json!({"path": "huge.txt", "content": huge}), Want::Err("write_file writes at most 1048576 bytes")),
        // bad arguments
        ("read_file", json!({"path": "file.txt", "offset": 0}), Want::Err("offset counts lines from 1")),
        ("read_file", json!({"path": "file.txt", "offset": 5}), Want::Err("offset 5 is past the end of file.txt (3 lines)")),
        ("read_file", json!({"path": 7}), Want::Err("invalid arguments for read_file")),
        ("write_file", json!({"path": "x"}), Want::Err("missing field `content`")),
        // what stays inside works
        ("read_file", json!({"path": "file.txt"}), Want::Ok("one\ntwo\nthree\n")),
        ("read_file", json!({"path": "file.txt", "offset": 2, "limit": 1}), Want::Ok("two\n")),
        ("read_file", json!({"path": "big.txt", "offset": 2622}), Want::Ok("xxx")),
        ("read_file", json!({"path": "./sub/../file.txt"}), Want::Ok("one\n")),
        ("read_file", json!({"path": "link_in"}), Want::Ok("inner\n")),
        ("read_file", json!({"path": "abs_in"}), Want::Ok("one\n")),
        ("read_file", json!({"path": "sub_link/inner.txt"}), Want::Ok("inner\n")),
        ("read_file", json!({"path": "deep/er/up_in"}), Want::Ok("one\n")),
        ("read_file", json!({"path": format!("{}file.txt", "deep/er/../../".repeat(200))}), Want::Ok("one\n")),
        ("list_dir", json!({}), Want::Ok("abs_out@\nbig.txt\ndangling_out@\ndeep/\ndir_out@\nfifo (fifo)\nfile.txt\n")),
        ("list_dir", json!({"path": "sub_link"}), Want::Ok("inner.txt\nlong_line.txt\n")),
        ("write_file", json!({"path": "new/dirs/made.txt", "content": "made"}), Want::Ok("created new/dirs/made.txt (4 bytes)")),
        ("write_file", json!({"path": "link_in", "content": "via link\n"}), Want::Ok("replaced link_in (9 bytes)")),
        ("read_file", json!({"path": "sub/inner.txt"}), Want::Ok("via link\n")),
    ];
    let before = snapshot(&f.outside);
    for (tool, args, want) in &table {
        let out = f.tools.run(tool, &args.to_string()).await;
        let shown = format!("{tool} {}", clip(&args.to_string()));
        assert!(
            !out.result.contains("TOP SECRET"),
            "{shown}: read the secret"
        );
        match want {
            Want::Ok(part) => {
                assert!(!out.is_error, "{shown}: {}", out.result);
                assert!(
                    out.result.contains(part),
                    "{shown}: {:?}",
                    clip(&out.result)
                );
            }
            Want::Err(part) => {
                assert!(out.is_error, "{shown}: {:?}", clip(&out.result));
                assert!(out.result.contains(part), "{shown}: {}", out.result);
            }
        }
    }
    assert_eq!(snapshot(&f.outside), before, "nothing outside changed");
    assert!(!Path::new("/tmp/zcoord-should-not-exist").exists());
    assert!(
        !f.ws.join("deep/d").exists(),
        "a path too deep creates nothing"
    );
    assert!(std::fs::symlink_metadata(f.ws.join("link_in"))
        .unwrap()
        .file_type()
        .is_symlink());
    let temp_left = snapshot(&f.ws)
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains(".zcoord-write-"));
    assert!(!temp_left, "no temporary file is left behind");
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Device files: a workspace at `/dev` holds nothing but. Only read and listed: a write test
/// that went wrong would replace a device node.
#[tokio::test]
async fn devices_are_refused() {
    let tools = Tools::new(&ToolsConfig {
        workspace: "/dev".into(),
        run_command: false,
    })
    .unwrap();
    for path in ["null", "zero", "urandom"] {
        let out = tools
            .run("read_file", &json!({"path": path}).to_string())
            .await;
        assert_eq!(
            out,
            ToolOutcome::err(format!("{path}: is a character device, not a regular file"))
        );
    }
    let listed = tools.run("list_dir", "{}").await;
    assert!(
        listed.result.contains("null (character device)\n"),
        "{}",
        listed.result
    );
}

/// A symlink put in place of the target between the check and the open: reading fails on
/// `O_NOFOLLOW`; writing replaces the symlink itself, never writing through it.
#[test]
fn a_symlink_swapped_in_as_the_target_is_not_followed() {
    let f = fixture();
    let ws = Workspace::open(&f.ws).unwrap();
    let swap = |name: &str| {
        std::fs::remove_file(f.ws.join(name)).unwrap();
        symlink(f.outside.join("secret"), f.ws.join(name)).unwrap();
    };

    let target = ws.resolve("file.txt", Missing::Refuse).unwrap();
    swap("file.txt");
    let err = open_read(target, "file.txt").unwrap_err().to_string();
    assert!(err.contains("changed while it was being opened"), "{err}");

    std::fs::write(f.ws.join("w.txt"), "old").unwrap();
    std::fs::set_permissions(f.ws.join("w.txt"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let allow = Missing::Allow {
        create_parents: true,
    };
    let target = ws.resolve("w.txt", allow).unwrap();
    swap("w.txt");
    write_at(target, "w.txt", b"new").unwrap();
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret")).unwrap(),
        SECRET
    );
    let meta = std::fs::symlink_metadata(f.ws.join("w.txt")).unwrap();
    assert!(meta.is_file(), "the symlink was replaced by the file");
    assert_eq!(std::fs::read_to_string(f.ws.join("w.txt")).unwrap(), "new");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o751,
        "the mode of the file it replaced"
    );
}

/// A parent directory moved away and replaced by a symlink out, after it was opened: the write
/// lands in the directory that was checked, wherever it is now, never through the symlink.
#[test]
fn a_parent_swapped_for_a_symlink_is_not_followed() {
    let f = fixture();
    let ws = Workspace::open(&f.ws).unwrap();
    let allow = Missing::Allow {
        create_parents: false,
    };
    let target = ws.resolve("sub/new.txt", allow).unwrap();
    std::fs::rename(f.ws.join("sub"), f.ws.join("sub_moved")).unwrap();
    symlink("../outside/dir", f.ws.join("sub")).unwrap();
    write_at(target, "sub/new.txt", b"hello").unwrap();
    assert!(!f.outside.join("dir/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.ws.join("sub_moved/new.txt")).unwrap(),
        "hello"
    );
}

#[test]
fn a_workspace_must_be_a_directory() {
    let f = fixture();
    let err = Workspace::open(&f.ws.join("file.txt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("file.txt"), "{err}");
    assert!(Workspace::open(&f.ws.join("nope")).is_err());
}
