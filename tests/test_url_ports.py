"""A URL whose port is out of range or no number is refused where the URL is first checked, as a malformed URL
naming it: a download said "it redirects to an invalid or non-HTTP URL" of a URL that was never fetched, and a
remote model's base_url was taken and failed on every request instead."""

from __future__ import annotations

import pytest
from jan import downloads as dl
from jan.errors import ModelLoadError
from jan.extensions.remote.upstream import upstream_for
from test_cli_helpers import cli_env, fails, jan

BAD_PORTS = ("http://127.0.0.1:99999/m.gguf", "http://host:abc/m.gguf", "https://[::1]:70000/m.gguf",
             "http://host:-1/m.gguf")


@pytest.mark.parametrize("url", BAD_PORTS)
def test_a_download_url_with_a_bad_port_is_malformed(url):
    with pytest.raises(dl.DownloadError, match="malformed URL") as raised:
        dl.resolve_url(url)
    assert raised.value.reason == dl.DownloadError.INVALID_URL
    assert dl.resolve_url("http://127.0.0.1:65535/m.gguf") == "http://127.0.0.1:65535/m.gguf"


def test_jan_models_pull_says_the_port_is_wrong(tmp_path):
    err = fails(jan("models", "pull", BAD_PORTS[0], env=cli_env(tmp_path / "jan")), "malformed URL", "Port")
    assert "redirect" not in err


@pytest.mark.parametrize("url", [u.replace("/m.gguf", "/v1") for u in BAD_PORTS])
def test_a_remote_base_url_with_a_bad_port_is_refused(url):
    for model, defaults in (({"id": "r", "settings": {"base_url": url}}, {}),
                            ({"id": "r", "settings": {}}, {"base_url": url})):
        with pytest.raises(ModelLoadError, match="is not a URL"):
            upstream_for(model, defaults, environ={})
    assert upstream_for({"id": "r", "settings": {"base_url": "http://127.0.0.1:8080/v1"}}, {}, environ={}).root
