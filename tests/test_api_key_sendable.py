"""An API key no client can send as it is is refused before the server starts, naming the setting and where it came
from: whitespace at its ends (HTTP takes it off the header a client sends: ``JAN_API_KEY="key "`` from a ``.env``
line, or ``"  "``, started a server that answered every request 401, with no word at start), a control character or
one past ASCII. ``jan serve`` says so as click's usage error (exit 2; ``$JAN_API_KEY`` named when the key came from
there); :class:`jan.server.config.ServerConfig` raises ValueError naming ``api_key``."""

from __future__ import annotations

import pytest
from test_cli_helpers import cli_env
from test_cli_helpers import jan as jan_cli

from jan.server.config import ServerConfig, api_key_problem

UNSENDABLE = ["  ", "key ", " key", "key\n", "k\tey\t", "k\x01ey", "ключ"]


@pytest.mark.parametrize("key", UNSENDABLE)
def test_a_key_no_client_can_send_is_refused_by_the_config(tmp_path, key):
    assert api_key_problem(key) is not None
    with pytest.raises(ValueError, match=r"^api_key: must "):
        ServerConfig(data_folder=tmp_path, api_key=key)


def test_a_key_a_client_can_send_is_taken(tmp_path):
    for key in ("sk-jan-1234", "a b", "x" * 200, "!#$%&'*+-.^_`|~"):
        assert api_key_problem(key) is None, key
        assert ServerConfig(data_folder=tmp_path, api_key=key).api_key == key


@pytest.mark.parametrize("key", ["key ", "  "])
def test_jan_serve_names_the_flag_or_the_environment_variable(tmp_path, key):
    env = cli_env(tmp_path / "data")
    result = jan_cli("serve", "-p", "0", "--api-key", key, env=env, timeout=60)
    assert result.returncode == 2, result
    assert "Invalid value for '--api-key': must not begin or end with whitespace" in result.stderr, result.stderr
    assert "$JAN_API_KEY" not in result.stderr
    result = jan_cli("serve", "-p", "0", env={**env, "JAN_API_KEY": key}, timeout=60)
    assert result.returncode == 2, result
    assert "must not begin or end with whitespace" in result.stderr, result.stderr
    assert "(the key came from $JAN_API_KEY)" in result.stderr, result.stderr


def test_a_client_takes_the_key_without_its_ends_and_names_one_it_cannot_send(tmp_path):
    """A command's ``--api-key``/``$JAN_API_KEY`` loses the whitespace at its ends, as HTTP drops it (``$(cat keyfile)``
    with a newline inside a quoted export); one that still cannot travel in a header is a usage error naming
    ``$JAN_API_KEY``, where it read as "no jan server answers" (the header was refused before anything was sent)."""
    env = {**cli_env(tmp_path / "data"), "JAN_API_URL": "http://127.0.0.1:9"}
    result = jan_cli("models", "list", env={**env, "JAN_API_KEY": "k\x01ey"}, timeout=60)
    assert result.returncode == 2, result
    assert "Invalid value for '--api-key': must be printable ASCII" in result.stderr, result.stderr
    assert "(the key came from $JAN_API_KEY)" in result.stderr, result.stderr
    result = jan_cli("models", "list", "--api-key", "k\ney", env=env, timeout=60)
    assert result.returncode == 2 and "$JAN_API_KEY" not in result.stderr, result
    result = jan_cli("models", "list", env={**env, "JAN_API_KEY": "key\n"}, timeout=60)
    assert "--api-key" not in result.stderr, result.stderr  # taken (the server at the URL is another matter)
