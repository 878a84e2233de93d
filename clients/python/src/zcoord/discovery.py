"""Finding a server: the data directory (PROTOCOL §1, the same derivation as the `zcoord` CLI),
the walk-up from the current directory to the nearest workspace with a running server, the
discovery file `instance.json`, and the endpoints plus credentials a client connects with.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import DiscoveryError
from .security import Credentials, CurveKeys

FILE_NAME = "instance.json"
SECRET_ENV = "ZCOORD_SECRET"
DATA_DIR_ENV = "ZCOORD_DATA_DIR"
WORKSPACE_ENV = "ZCOORD_WORKSPACE"
RPC_ENV = "ZCOORD_RPC"
PUB_ENV = "ZCOORD_PUB"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def data_home() -> Path:
    """`$XDG_DATA_HOME/zcoord`, else `~/.local/share/zcoord`, else `./.zcoord`."""
    xdg = _env("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "zcoord"
    home = _env("HOME")
    if home:
        return Path(home) / ".local/share/zcoord"
    return Path(".zcoord")


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits: the hash the server names workspace directories with."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def workspace_data_dir(workspace: Union[str, Path]) -> Path:
    """`<data home>/workspaces/<name>-<hash>` of a workspace: its absolute path with symlinks
    resolved, hashed as UTF-8; the name is its last component, `[A-Za-z0-9_-]` kept, others `_`,
    at most 16 characters."""
    abs_path = os.path.realpath(workspace)
    base = os.path.basename(abs_path) or "root"
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in base)[:16]
    digest = fnv1a64(abs_path.encode("utf-8", "surrogateescape"))
    return data_home() / "workspaces" / f"{name}-{digest:016x}"


def pid_alive(pid: int) -> bool:
    """False only when the process certainly does not exist."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return True
    return True


def running_server_in(data_dir: Path) -> bool:
    """Whether `data_dir` holds a discovery file whose pid is alive."""
    try:
        d = read_discovery(data_dir / FILE_NAME)
    except DiscoveryError:
        return False
    return pid_alive(d.pid)


def find_workspace(start: Union[str, Path, None] = None) -> Path:
    """The nearest ancestor of `start` (default: the current directory), itself included, whose
    data directory holds a running server's discovery file; `start` itself when none does.
    The walk-up the `zcoord` CLI does too, like git looking for `.git`."""
    here = Path(os.path.realpath(start if start is not None else os.getcwd()))
    for candidate in (here, *here.parents):
        if running_server_in(workspace_data_dir(candidate)):
            return candidate
    return here


def data_dir_for(
    data_dir: Union[str, Path, None] = None,
    workspace: Union[str, Path, None] = None,
    cwd: Union[str, Path, None] = None,
) -> Path:
    """The data directory: `data_dir`, else `$ZCOORD_DATA_DIR`, else the workspace's (`workspace`,
    else `$ZCOORD_WORKSPACE`, else `find_workspace(cwd)`)."""
    if data_dir is not None:
        return Path(data_dir)
    env_dir = _env(DATA_DIR_ENV)
    if env_dir:
        return Path(env_dir)
    ws = workspace if workspace is not None else _env(WORKSPACE_ENV)
    if ws is not None:
        return workspace_data_dir(ws)
    return workspace_data_dir(find_workspace(cwd))


@dataclass(frozen=True)
class Discovery:
    """The discovery file a running server writes (`<data-dir>/instance.json`, mode 0600)."""

    path: Path
    instance_id: str
    pid: int
    rpc: str
    pub: str
    protocol_version: int
    version: str
    started_at: str
    secret: Optional[str] = None
    curve_public_key: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_discovery(path: Union[str, Path]) -> Discovery:
    """Reads and checks a discovery file; DiscoveryError when missing or malformed."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise DiscoveryError(f"no discovery file at {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise DiscoveryError(f"discovery file {path} is not JSON: {e}") from e
    try:
        return Discovery(
            path=path,
            instance_id=str(raw["instance_id"]),
            pid=int(raw["pid"]),
            rpc=str(raw["endpoints"]["rpc"]),
            pub=str(raw["endpoints"]["pub"]),
            protocol_version=int(raw.get("protocol_version", 0)),
            version=str(raw.get("version", "")),
            started_at=str(raw.get("started_at", "")),
            secret=raw.get("secret"),
            curve_public_key=raw.get("curve_public_key"),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DiscoveryError(f"discovery file {path} is not valid: missing or bad {e}") from e


@dataclass(frozen=True)
class Target:
    """Where to connect and how to authenticate."""

    rpc: str
    pub: str
    credentials: Credentials
    discovery: Optional[Discovery] = None


def resolve(
    *,
    rpc: Optional[str] = None,
    pub: Optional[str] = None,
    data_dir: Union[str, Path, None] = None,
    workspace: Union[str, Path, None] = None,
    secret: Optional[str] = None,
    curve: Union[CurveKeys, tuple[str, str], None] = None,
    cwd: Union[str, Path, None] = None,
) -> Target:
    """The endpoints: `rpc`/`pub`, else `$ZCOORD_RPC`/`$ZCOORD_PUB`, else the discovery file of
    the data directory (see `data_dir_for`). The PLAIN secret: `secret`, else `$ZCOORD_SECRET`, else
    the discovery file's. `curve` is a client key pair (public, secret) or full CurveKeys; the
    server key comes from the discovery file when not given."""
    rpc = rpc or _env(RPC_ENV)
    pub = pub or _env(PUB_ENV)
    explicit = bool(rpc)  # calls need only rpc; a subscription without pub fails when made
    disc: Optional[Discovery] = None
    path = data_dir_for(data_dir, workspace, cwd) / FILE_NAME
    try:
        disc = read_discovery(path)
    except DiscoveryError:
        if not explicit:
            raise
    if disc is not None and not explicit and not pid_alive(disc.pid):
        raise DiscoveryError(
            f"the discovery file {path} is stale: instance {disc.instance_id} "
            f"(pid {disc.pid}) is not running"
        )
    rpc_ep = rpc or (disc.rpc if disc else None)
    pub_ep = pub or (disc.pub if disc else None)
    if not rpc_ep:
        raise DiscoveryError(f"no endpoints: give rpc and pub, or start `zcoord serve` ({path})")
    pub_ep = pub_ep or ""
    keys: Optional[CurveKeys] = None
    if isinstance(curve, CurveKeys):
        keys = curve
    elif curve is not None:
        server_key = disc.curve_public_key if disc else None
        if not server_key:
            raise DiscoveryError("CURVE keys given but no server key (curve_public_key)")
        keys = CurveKeys(server_key, curve[0], curve[1])
    plain = secret or _env(SECRET_ENV) or (disc.secret if disc else None)
    tcp = rpc_ep.startswith("tcp://") or pub_ep.startswith("tcp://")
    if tcp and keys is None and not plain:
        raise DiscoveryError(
            "tcp endpoint but no secret ($ZCOORD_SECRET or the discovery file's): "
            "the server would not answer"
        )
    return Target(rpc_ep, pub_ep, Credentials(secret=plain, curve=keys), disc)
