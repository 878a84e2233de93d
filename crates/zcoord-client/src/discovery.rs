//! The discovery file: how clients find a running server. Written only after the sockets are bound,
//! atomically (temp file + rename) with mode 0600, removed on clean exit. Also the default
//! per-user directories.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use zcoord_protocol::ids::InstanceId;
use zcoord_protocol::methods::Endpoints;

pub const FILE_NAME: &str = "instance.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "DiscoveryFile")]
pub struct Discovery {
    pub instance_id: InstanceId,
    pub pid: u32,
    pub endpoints: Endpoints,
    #[schemars(with = "zcoord_protocol::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub protocol_version: u32,
    pub version: String,
    /// The PLAIN secret clients present when an endpoint is tcp (this file is 0600: only the
    /// user can read it). Absent for ipc-only instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The server's CURVE public key (Z85) when tcp peers must use CURVE: the key clients set
    /// as `ZMQ_CURVE_SERVERKEY`. Public, but only as trustworthy as the way it reached the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve_public_key: Option<String>,
    /// The workspace the server serves (absolute, symlinks resolved), so a listing of running
    /// servers can name it; absent from servers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
}

/// The data directory of a workspace (the directory an app works in): one per workspace under
/// the user's data home, named after the directory and a stable hash of its absolute path, so two
/// workspaces never share a primary and the same workspace always maps to the same endpoints.
pub fn workspace_data_dir(workspace: &Path) -> std::io::Result<PathBuf> {
    let abs = std::fs::canonicalize(workspace)?;
    Ok(workspace_dir_in(&default_data_dir(), &abs))
}

/// The data directory of the workspace `canonical` (absolute, symlinks already resolved) under
/// `data_home`: `<data_home>/workspaces/<name>-<hash>`.
pub fn workspace_dir_in(data_home: &Path, canonical: &Path) -> PathBuf {
    let name: String = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    let hash = fnv1a64(canonical.to_string_lossy().as_bytes());
    data_home
        .join("workspaces")
        .join(format!("{name}-{hash:016x}"))
}

/// False only when the process certainly does not exist (Linux: no `/proc/<pid>`). Elsewhere, or
/// when unsure, true: a call's timeout then decides. Meaningful only for a discovery file written
/// on this machine.
pub fn pid_may_be_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// FNV-1a, 64 bits: tiny and stable across Rust releases (std's hasher promises neither).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `$ZCOORD_DATA_DIR` is handled by clap; this is the fallback: `$XDG_DATA_HOME/zcoord`, else
/// `~/.local/share/zcoord`, else `./.zcoord`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("zcoord");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/zcoord");
    }
    PathBuf::from(".zcoord")
}

pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Creates `dir` (and parents) if it is missing, private to the user (0700). An existing
/// directory is left as it is: `--data-dir .` must not change the mode of the current directory.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

pub fn write(path: &Path, d: &Discovery) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(d).map_err(std::io::Error::other)?;
    {
        let mut f = create_private(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

pub fn read(path: &Path) -> Result<Discovery, DiscoveryError> {
    let raw = fs::read(path).map_err(|source| DiscoveryError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&raw).map_err(|source| DiscoveryError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Removes the file if it still names `instance_id` (a newer server may have replaced it).
pub fn remove_if_ours(path: &Path, instance_id: InstanceId) {
    if let Ok(d) = read(path) {
        if d.instance_id == instance_id {
            let _ = fs::remove_file(path);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no discovery file at {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("discovery file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_map_to_distinct_stable_directories() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let da = workspace_data_dir(a.path()).unwrap();
        assert_eq!(da, workspace_data_dir(a.path()).unwrap(), "stable");
        assert_ne!(da, workspace_data_dir(b.path()).unwrap(), "distinct");
        assert!(da.starts_with(default_data_dir().join("workspaces")));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn write_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let d = Discovery {
            instance_id: InstanceId(uuid::Uuid::from_u128(7)),
            pid: 42,
            endpoints: Endpoints {
                rpc: "ipc:///x/rpc".into(),
                pub_: "ipc:///x/pub".into(),
            },
            started_at: OffsetDateTime::UNIX_EPOCH,
            protocol_version: 1,
            version: "0".into(),
            secret: None,
            curve_public_key: Some("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".into()),
            workspace: Some("/home/me/project".into()),
        };
        write(&path, &d).unwrap();
        assert_eq!(read(&path).unwrap(), d);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        remove_if_ours(&path, InstanceId(uuid::Uuid::from_u128(8)));
        assert!(path.exists(), "another instance's file is left alone");
        remove_if_ours(&path, d.instance_id);
        assert!(!path.exists());
    }
}
