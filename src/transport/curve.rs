//! CURVE keys (ZeroMQ RFC 26): the server's long-term key pair, kept in the data directory, and
//! the client keys the user authorises in a file of their own, one Z85 public key a line as in
//! ssh's `authorized_keys`. Files and parsing only: the ZAP handler ([`super::auth`]) decides
//! with them, and nothing here touches a socket.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The server's key pair, in the data directory.
pub const KEY_PAIR_FILE: &str = "curve_server.key";
/// The authorised client keys, in the data directory unless `serve --authorized-keys` says
/// otherwise.
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
/// A key's length in Z85 (32 bytes, 5 characters per 4 bytes).
const Z85_KEY_LEN: usize = 40;
/// Z85's 85 characters (ZeroMQ RFC 32).
const Z85_ALPHABET: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    #[error(
        "this zcoord's libzmq has no CURVE (built without libsodium): build zcoord where \
         .cargo/config.toml links the system's libzmq (x86-64 or arm64 Linux, with libzmq3-dev \
         installed: README)"
    )]
    Unavailable,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the CURVE key pair {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a CURVE key pair: {0}")]
    Generate(zmq::Error),
    #[error(
        "the CURVE key pair {path} is readable by group or others (mode {mode:03o}); chmod 600 it"
    )]
    KeyPairOpen { path: PathBuf, mode: u32 },
    #[error("the CURVE key pair {path} is not valid: {why}")]
    KeyPairInvalid { path: PathBuf, why: String },
    #[error(
        "{path} can be changed by group or others (mode {mode:03o}): whoever can write it can \
         authorise their own key; chmod go-w it"
    )]
    KeysWritable { path: PathBuf, mode: u32 },
    #[error("{path} belongs to uid {owner}, not to this user (uid {me}) or root")]
    KeysNotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} line {line}: {why}")]
    KeyLine {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// Whether the libzmq linked in can do CURVE at all.
pub fn available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// A CURVE public key: 32 bytes, written in Z85.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        bytes.try_into().ok().map(PublicKey)
    }

    /// Parses a Z85 key (40 characters); the error says what is wrong with it.
    pub fn from_z85(text: &str) -> Result<PublicKey, String> {
        decode_key(text).map(PublicKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn z85(&self) -> String {
        encode_key(&self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.z85())
    }
}

/// The server's long-term key pair. `Debug` shows the public key only.
#[derive(Clone)]
pub struct ServerKeyPair {
    pub public: PublicKey,
    secret: [u8; 32],
}

impl std::fmt::Debug for ServerKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKeyPair({}, <secret>)", self.public.z85())
    }
}

impl ServerKeyPair {
    pub fn generate() -> Result<ServerKeyPair, CurveError> {
        if !available() {
            return Err(CurveError::Unavailable);
        }
        let pair = zmq::CurveKeyPair::new().map_err(CurveError::Generate)?;
        Ok(ServerKeyPair {
            public: PublicKey(pair.public_key),
            secret: pair.secret_key,
        })
    }

    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key pair in `data_dir`, created (0600) on first use and the same one after that, so
    /// clients that pinned the server's public key keep reaching it across restarts. `true`
    /// when it was created now.
    pub fn load_or_create(data_dir: &Path) -> Result<(ServerKeyPair, bool), CurveError> {
        let path = data_dir.join(KEY_PAIR_FILE);
        if path.exists() {
            return Self::load(&path).map(|k| (k, false));
        }
        let keys = Self::generate()?;
        let create = |source| CurveError::Create {
            path: path.clone(),
            source,
        };
        // create_new: a file that appeared meanwhile is never overwritten (it would change the
        // server's identity under its clients).
        let mut f = open_private_new(&path).map_err(create)?;
        f.write_all(keys.file_text().as_bytes()).map_err(create)?;
        f.sync_all().map_err(create)?;
        Ok((keys, true))
    }

    fn load(path: &Path) -> Result<ServerKeyPair, CurveError> {
        let read = |source| CurveError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = mode_of(&fs::metadata(path).map_err(read)?);
        if mode & 0o077 != 0 {
            return Err(CurveError::KeyPairOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).map_err(|why| CurveError::KeyPairInvalid {
            path: path.to_owned(),
            why,
        })
    }

    fn file_text(&self) -> String {
        format!(
            "# zcoord's CURVE server key pair (Z85). The secret key is the server's identity: keep \
             this file 0600.\n# Clients need the public key only (also in instance.json).\n\
             public-key = \"{}\"\nsecret-key = \"{}\"\n",
            self.public.z85(),
            encode_key(&self.secret)
        )
    }

    fn parse(text: &str) -> Result<ServerKeyPair, String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct KeyFile {
            public_key: String,
            secret_key: String,
        }
        let file: KeyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        Ok(ServerKeyPair {
            public: PublicKey::from_z85(&file.public_key)
                .map_err(|why| format!("public-key: {why}"))?,
            secret: decode_key(&file.secret_key).map_err(|why| format!("secret-key: {why}"))?,
        })
    }
}

/// The client keys allowed in. Read at start-up (to refuse a broken file at once) and again at
/// every CURVE handshake, so a key added or removed counts from the next connection on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AuthorizedKeys(HashSet<PublicKey>);

impl AuthorizedKeys {
    /// Reads `path`. A missing file authorises nobody; a file others can write, or a line that
    /// is neither a key, a comment nor blank, is an error.
    pub fn load(path: &Path) -> Result<AuthorizedKeys, CurveError> {
        let read = |source| CurveError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AuthorizedKeys::default())
            }
            Err(e) => return Err(read(e)),
        };
        check_owner(path, &meta)?;
        let mode = mode_of(&meta);
        if mode & 0o022 != 0 {
            return Err(CurveError::KeysWritable {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).map_err(|(line, why)| CurveError::KeyLine {
            path: path.to_owned(),
            line,
            why,
        })
    }

    /// One key a line, optionally followed by a comment after white space (as ssh's); `#`
    /// starts a comment line. Errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<AuthorizedKeys, (usize, String)> {
        let mut keys = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let word = line.split_whitespace().next().unwrap_or_default();
            keys.insert(PublicKey::from_z85(word).map_err(|why| (i + 1, why))?);
        }
        Ok(AuthorizedKeys(keys))
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.0.contains(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    if text.len() != Z85_KEY_LEN {
        return Err(format!(
            "a CURVE key is {Z85_KEY_LEN} Z85 characters, this is {}",
            text.len()
        ));
    }
    // libzmq 4.3's decoder takes some characters outside the alphabet (a typo would become
    // another key), so the alphabet is checked here.
    if let Some(c) = text.chars().find(|c| !Z85_ALPHABET.contains(*c)) {
        return Err(format!("not Z85: {c:?} is not in the Z85 alphabet"));
    }
    let bytes = zmq::z85_decode(text).map_err(|_| "not Z85".to_owned())?;
    bytes.try_into().map_err(|_| "not a 32-byte key".to_owned())
}

fn encode_key(key: &[u8; 32]) -> String {
    // 32 bytes is a multiple of 4, the only thing Z85 encoding can refuse.
    zmq::z85_encode(key).unwrap_or_default()
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(_meta: &fs::Metadata) -> u32 {
    0o600
}

/// Like ssh, a key file another user owns is not trusted (root's is: an administrator may
/// hand out keys).
#[cfg(unix)]
fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), CurveError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(CurveError::KeysNotOurs {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_path: &Path, _meta: &fs::Metadata) -> Result<(), CurveError> {
    Ok(())
}

#[cfg(unix)]
fn open_private_new(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private_new(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey(zmq::CurveKeyPair::new().unwrap().public_key)
    }

    #[test]
    fn authorized_keys_take_one_key_a_line_with_comments_and_blanks() {
        let (a, b) = (key(), key());
        let text = format!(
            "# laptop and phone\n\n  {}  alice@laptop\n{}\n# {}\n",
            a.z85(),
            b.z85(),
            key().z85()
        );
        let keys = AuthorizedKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&a) && keys.contains(&b));
        assert!(!keys.contains(&key()));
        assert!(AuthorizedKeys::parse("# nobody yet\n").unwrap().is_empty());
    }

    #[test]
    fn a_line_that_is_not_a_key_is_refused_with_its_number() {
        let good = key().z85();
        for (text, why) in [
            (format!("{good}\nssh-ed25519 AAAA\n"), "40 Z85 characters"),
            (format!("{good}\n{}\n", &good[..39]), "40 Z85 characters"),
            (format!("{good}\n{}\"\n", &good[..39]), "not Z85"),
        ] {
            let (line, msg) = AuthorizedKeys::parse(&text).unwrap_err();
            assert_eq!(line, 2, "{text}");
            assert!(msg.contains(why), "{msg}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_authorized_keys_file_others_can_write_is_refused_and_a_missing_one_is_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUTHORIZED_KEYS_FILE);
        assert!(AuthorizedKeys::load(&path).unwrap().is_empty());
        fs::write(&path, format!("{}\n", key().z85())).unwrap();
        for (mode, ok) in [(0o600, true), (0o644, true), (0o664, false), (0o646, false)] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let r = AuthorizedKeys::load(&path);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_key_pair_is_created_private_once_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        if !available() {
            return; // a build without CURVE cannot make keys; serve refuses before this
        }
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = ServerKeyPair::load_or_create(dir.path()).unwrap();
        assert!(created);
        let path = dir.path().join(KEY_PAIR_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = ServerKeyPair::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again.public, first.public);
        assert_eq!(again.secret, first.secret);
        assert!(!format!("{first:?}").contains(&encode_key(&first.secret)));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = ServerKeyPair::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "public-key = \"x\"\n").unwrap();
        let err = ServerKeyPair::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CurveError::KeyPairInvalid { .. }), "{err}");
    }
}
