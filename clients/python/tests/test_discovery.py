"""Finding the server: the data directory as the CLI derives it, the walk-up from a
subdirectory, stale files, and tcp's secret."""

import os
import shutil
from pathlib import Path

import pytest

import zcoord
from zcoord import discovery
from conftest import Server, short_tempdir


def test_fnv_and_names_match_the_server() -> None:
    assert discovery.fnv1a64(b"") == 0xCBF29CE484222325
    assert discovery.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    d = discovery.workspace_data_dir("/tmp")
    assert d.name.startswith("tmp-") and len(d.name) == len("tmp-") + 16


def test_explicit_and_env_data_dirs_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZCOORD_DATA_DIR", str(tmp_path / "env"))
    assert discovery.data_dir_for(tmp_path / "arg") == tmp_path / "arg"
    assert discovery.data_dir_for() == tmp_path / "env"
    monkeypatch.delenv("ZCOORD_DATA_DIR")
    monkeypatch.setenv("ZCOORD_WORKSPACE", str(tmp_path))
    assert discovery.data_dir_for() == discovery.workspace_data_dir(tmp_path)


def test_walk_up_finds_the_workspace_server_from_a_subdirectory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = short_tempdir("zc-ws-")
    home, ws = root / "home", root / "my workspace"
    sub = ws / "src" / "deep"
    sub.mkdir(parents=True)
    home.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    for var in ("ZCOORD_DATA_DIR", "ZCOORD_WORKSPACE", "ZCOORD_RPC", "ZCOORD_PUB"):
        monkeypatch.delenv(var, raising=False)
    # No server yet: the workspace is the directory itself.
    assert zcoord.find_workspace(sub) == Path(os.path.realpath(sub))
    server = Server(
        None, cwd=ws, env={"XDG_DATA_HOME": str(home)},
        discovery_dir=discovery.workspace_data_dir(ws),
    )
    try:
        assert zcoord.find_workspace(sub) == Path(os.path.realpath(ws))
        monkeypatch.chdir(sub)
        with zcoord.Client.connect(timeout=5.0) as c:
            assert c.instance_ping()["instance_id"] == server.discovery.instance_id
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_no_server_and_stale_files_are_discovery_errors(tmp_path: Path) -> None:
    with pytest.raises(zcoord.DiscoveryError, match="no discovery file"):
        zcoord.resolve(data_dir=tmp_path)
    (tmp_path / "instance.json").write_text(
        '{"instance_id": "x", "pid": 999999999, "endpoints": {"rpc": "ipc:///nope", "pub": "ipc:///nope2"},'
        ' "protocol_version": 2, "version": "0", "started_at": ""}'
    )
    with pytest.raises(zcoord.DiscoveryError, match="stale"):
        zcoord.resolve(data_dir=tmp_path)
    # Endpoints given explicitly need no (live) discovery file.
    t = zcoord.resolve(rpc="ipc:///a", pub="ipc:///b", data_dir=tmp_path / "none")
    assert (t.rpc, t.pub) == ("ipc:///a", "ipc:///b")
    with pytest.raises(zcoord.DiscoveryError, match="secret"):
        zcoord.resolve(rpc="tcp://127.0.0.1:1", pub="tcp://127.0.0.1:2", data_dir=tmp_path / "none")
