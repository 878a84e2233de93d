//! Workspaces and the data-directory lock as users meet them: two workspaces side by side each
//! get their own primary, a stale discovery file is reported as stale, and a data directory where
//! the lock cannot be created is refused with a clear error.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::eventually;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs zcoord with `XDG_DATA_HOME` pointed at `home`, so workspaces map under it.
fn zcoord(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env("XDG_DATA_HOME", home)
        .env_remove("ZCOORD_DATA_DIR")
        .env_remove("ZCOORD_RPC")
        .env_remove("ZCOORD_PUB")
        .args(args);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn discovered(home: &Path, workspace: &Path) -> Value {
    eventually("the workspace's discovery file", || {
        let out = zcoord(
            home,
            &[
                "--workspace",
                workspace.to_str().unwrap(),
                "call",
                "instance.info",
            ],
        )
        .output()
        .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    })
}

#[test]
fn two_workspaces_side_by_side_each_have_their_own_primary() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let serve = |w: &Path| {
        Proc(
            zcoord(
                home.path(),
                &[
                    "--workspace",
                    w.to_str().unwrap(),
                    "serve",
                    "--store",
                    "memory",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        )
    };
    let _pa = serve(a.path());
    let _pb = serve(b.path());
    let ia = discovered(home.path(), a.path());
    let ib = discovered(home.path(), b.path());
    assert_ne!(
        ia["instance_id"], ib["instance_id"],
        "two primaries, one per workspace"
    );
    assert_ne!(ia["endpoints"]["rpc"], ib["endpoints"]["rpc"]);
    for info in [&ia, &ib] {
        let ep = info["endpoints"]["rpc"].as_str().unwrap();
        assert!(
            ep.starts_with(&format!("ipc://{}", home.path().display())),
            "{ep}"
        );
    }
    // The same workspace again is refused, naming its primary.
    let again = zcoord(
        home.path(),
        &["--workspace", a.path().to_str().unwrap(), "serve"],
    )
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains(ia["instance_id"].as_str().unwrap()));
}

#[test]
fn a_stale_discovery_file_is_reported_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut server = Proc(
        zcoord(dir.path(), &["--data-dir", d, "serve", "--store", "memory"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the discovery file", || {
        dir.path().join("instance.json").exists().then_some(())
    });
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let ping = zcoord(dir.path(), &["--data-dir", d, "ping"])
        .output()
        .unwrap();
    assert_eq!(ping.status.code(), Some(3));
    assert!(stderr(&ping).contains("is stale"), "{}", stderr(&ping));
}

/// Makes `path` unwritable for the test's life: `chattr +i` as root (who ignores permission
/// bits), mode 0555 otherwise.
struct Unwritable<'a>(&'a Path, bool);

impl<'a> Unwritable<'a> {
    fn new(path: &'a Path) -> Unwritable<'a> {
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        if root {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "chattr +i failed: cannot make a directory unwritable as root"
            );
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        Unwritable(path, root)
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_data_directory_where_the_lock_cannot_be_taken_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _guard = Unwritable::new(&data);
    let out = zcoord(dir.path(), &["--data-dir", data.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("lock"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing was created"
    );
}

#[test]
fn client_commands_in_a_subdirectory_walk_up_to_their_workspace_server() {
    let home = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let ws = std::fs::canonicalize(tree.path()).unwrap().join("project");
    let deep = ws.join("src/module");
    let elsewhere = tree.path().join("elsewhere");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let ws_arg = ws.to_str().unwrap();
    let _server = Proc(
        zcoord(
            home.path(),
            &["--workspace", ws_arg, "serve", "--store", "memory"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let info = discovered(home.path(), &ws);

    // From two levels down, with no flag: the workspace's server.
    let ping = zcoord(home.path(), &["call", "instance.info"])
        .current_dir(&deep)
        .output()
        .unwrap();
    assert_eq!(ping.status.code(), Some(0), "{}", stderr(&ping));
    let here: Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert_eq!(here["instance_id"], info["instance_id"]);

    let whr = zcoord(home.path(), &["where", "--json"])
        .current_dir(&deep)
        .output()
        .unwrap();
    assert_eq!(whr.status.code(), Some(0), "{}", stderr(&whr));
    let whr: Value = serde_json::from_slice(&whr.stdout).unwrap();
    assert_eq!(whr["workspace"], ws_arg);
    assert_eq!(whr["found_by"], "walk_up");
    assert_eq!(whr["running"], true);
    assert_eq!(whr["instance_id"], info["instance_id"]);
    assert_eq!(whr["pid"], info["pid"]);
    assert_eq!(whr["endpoints"], info["endpoints"]);
    let data_dir = whr["data_dir"].as_str().unwrap();
    assert!(data_dir.starts_with(&format!(
        "{}/zcoord/workspaces/project-",
        home.path().display()
    )));
    assert_eq!(whr["discovery_file"], format!("{data_dir}/instance.json"));
    assert!(whr.get("secret").is_none());

    // Outside the workspace: no server, and the error names --workspace and the running one.
    let lost = zcoord(home.path(), &["ping"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(lost.status.code(), Some(3));
    let err = stderr(&lost);
    assert!(err.contains("no zcoord server runs for"), "{err}");
    assert!(
        err.contains(&format!("--workspace {ws_arg}  (pid {}", info["pid"])),
        "{err}"
    );
    let whr = zcoord(home.path(), &["where", "--json"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(whr.status.code(), Some(3));
    let whr: Value = serde_json::from_slice(&whr.stdout).unwrap();
    assert_eq!(
        (whr["running"].clone(), whr["found_by"].clone()),
        (Value::Bool(false), "current_dir".into())
    );

    // The flags keep precedence: --workspace names another directory, which has no server.
    let other = zcoord(
        home.path(),
        &["--workspace", elsewhere.to_str().unwrap(), "ping"],
    )
    .current_dir(&deep)
    .output()
    .unwrap();
    assert_eq!(other.status.code(), Some(3));
    assert!(
        stderr(&other).contains("no discovery file"),
        "{}",
        stderr(&other)
    );
    let by_env = zcoord(home.path(), &["ping"])
        .env("ZCOORD_DATA_DIR", elsewhere.join("data"))
        .current_dir(&deep)
        .output()
        .unwrap();
    assert_eq!(
        by_env.status.code(),
        Some(3),
        "ZCOORD_DATA_DIR wins over the walk-up"
    );
}
