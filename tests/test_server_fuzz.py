"""Issue 10 item 14: schemathesis over every operation of ``/openapi.json``, API key on, on a real server
with stories260K. No 5xx, no response outside the documented statuses, media types and schemas.

Both schema-valid (positive) and schema-invalid (negative) requests. Bounded and reproducible: a fixed
number of examples per operation, derandomized, no shrinking, no coverage or stateful phase (those
multiply the cases; generation alone reaches every operation). Downloads
(``POST /v1/models/pull``) go through a proxy that is not there, so a generated URL never leaves the machine.
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

import schemathesis  # noqa: E402  (in the test extra)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (schemathesis depends on hypothesis)
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jan.server.config import ServerConfig  # noqa: E402
from jan.testing.server import ServerThread  # noqa: E402

KEY = "sk-fuzz"
#: Examples per operation: schema-valid ones, and schema-invalid ones (cheaper to refuse, but each
#: still a request; fewer keep the whole file at a few minutes on 2 cores).
EXAMPLES = {"positive": 10, "negative": 6}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections to it are refused at once


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, stories_path):
    dead = f"http://127.0.0.1:{_dead_port()}"
    # urllib's global opener reads the proxy variables once, when the process first calls urlopen: made
    # inside the block below, it would send every later test's loopback call to the dead proxy.
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))
    with pytest.MonkeyPatch.context() as env:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.setenv(name, dead)
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        env.setenv("no_proxy", "127.0.0.1,localhost")
        env.setenv("JAN_HF_ENDPOINT", dead)
        cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("fuzz") / "data", models=[str(stories_path)],
                           n_ctx=256, n_parallel=2, n_threads=1, api_key=KEY)
        with ServerThread(cfg) as srv:
            yield srv


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    req = urllib.request.Request(fuzz_server.base_url + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        spec = json.loads(resp.read())
    config = schemathesis.config.SchemathesisConfig.from_dict({
        "base-url": fuzz_server.base_url,
        "headers": {"Authorization": f"Bearer {KEY}"},
        "request-timeout": 120,
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES["positive"], "deterministic": True},
    })
    return schemathesis.openapi.from_dict(spec, config=config)


def _operation_ids(spec_schema) -> list:
    return [result.ok() for result in spec_schema.get_all_operations()]


def _fuzz(label: str, strategy, examples: int, failures: dict[str, str], sent: list[int]) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=strategy)
    def run(case):
        if label in failures:
            return  # one failure per operation is enough to report
        sent[0] += 1
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures[label] = str(exc)[:1500]

    try:
        run()
    except Unsatisfiable:
        pass  # negative mode: an operation with nothing to get wrong (no parameters, no body)


@pytest.mark.timeout(1800)  # bounded by EXAMPLES; the margin is for a loaded machine
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_against_its_spec(api_schema, mode):
    """Each operation gets its own bounded Hypothesis run; every failure is collected, then reported
    together (one line per operation), so one run shows the whole picture."""
    from schemathesis.generation.modes import GenerationMode

    failures: dict[str, str] = {}
    sent = [0]
    operations = _operation_ids(api_schema)
    assert len(operations) >= 40
    for operation in operations:
        _fuzz(operation.label, operation.as_strategy(generation_mode=GenerationMode(mode)), EXAMPLES[mode], failures,
              sent)
    assert sent[0] >= 2 * len(operations)  # the run really sent requests
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
