"""Bad input at start-up: exit code 2 or 3 and one clear line naming what is wrong."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import run_edged, write_config

pytestmark = pytest.mark.integration


def error_line(stderr: str) -> str:
    """The one line edged printed about the failure (log lines before it are allowed)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("edged:")]
    assert len(lines) == 1, stderr
    assert stderr.rstrip().endswith(lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[node\nname = 'x'\n", "malformed TOML"),
        ("[node]\ncolour = 'red'\n", "node.colour: unknown key; [node] allows name, event"),
        ("[http]\nport = 70000\n", "http.port = 70000: must be at most 65535"),
        ("[http]\nport = '8080'\n", "http.port = '8080': must be an integer"),
        ("[upload]\npart_size = '1MiB'\n", "upload.part_size = 1048576: must be at least"),
        ("[media]\ntest_pattern = 'sometimes'\n", "must be one of 'auto', 'on', 'off'"),
        ("[cache]\nmax_bytes = 'lots'\n", "cache.max_bytes = 'lots': not a size"),
    ],
)
def test_bad_config_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    config = write_config(tmp_path / "bad.toml", text)
    for args in (["config", "check", str(config)], ["run", "--config", str(config)]):
        result = run_edged(*args)
        assert result.returncode == 2, result.stderr
        line = error_line(result.stderr)
        assert str(config) in line
        assert expected in line


def test_port_out_of_range_on_the_command_line(tmp_path: Path) -> None:
    result = run_edged("run", "--port", "70000", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "'70000' is not a TCP port (0-65535)" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_edged("config", "check", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "cannot read config file: No such file or directory" in error_line(result.stderr)


def test_unwritable_data_dir_exits_3(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_edged("run", "--port", "0", "--data-dir", str(blocker / "state"))
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert f"data dir {blocker / 'state'} is not usable" in line
    assert "--data-dir" in line


def test_port_in_use_exits_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.toml", '[http]\nhost = "127.0.0.1"\n')
        result = run_edged(
            "run", "--config", str(config), "--port", str(port), "--data-dir", str(tmp_path / "d")
        )
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line


def test_token_file_readable_by_others_exits_3(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o644)
    config = write_config(
        tmp_path / "c.toml", f'[http]\nhost = "127.0.0.1"\nadmin_token_file = "{token}"\n'
    )
    result = run_edged("run", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 3
    assert f"run: chmod 600 {token}" in error_line(result.stderr)


def test_upstream_secret_readable_by_others_exits_3(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value")
    secret.chmod(0o644)
    config = write_config(
        tmp_path / "c.toml",
        f'[http]\nhost = "127.0.0.1"\n[upstream]\nendpoint = "127.0.0.1:9"\n'
        f'access_key = "k"\nsecret_key_file = "{secret}"\n',
    )
    result = run_edged("run", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert f"upstream secret key file {secret} is readable by others" in line
    assert "s3cr3t-value" not in result.stderr


def test_upstream_without_credentials_exits_2(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", '[http]\nhost = "127.0.0.1"\n[upstream]\nendpoint = "s3.local:9000"\n'
    )
    result = run_edged("run", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "upstream.access_key or upstream.secret_key_file is empty" in error_line(result.stderr)
