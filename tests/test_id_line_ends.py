"""An id or name jan checks against a pattern (and then builds a file name, a lease or a path of) is refused with a
line end after it: a pattern's ``$`` with ``re.match`` took ``"conv_x\\n"`` for whole, so such an id passed the check
and reached the store, a file name or a later check that raised where the first should have refused."""

from __future__ import annotations

import pytest

from jan.core.interfaces.tools import TOOL_NAME_RE
from jan.extensions.mcp.config import valid_name
from jan.server.dialects.conversations import valid_conversation_id, valid_item_id
from jan.server.dialects.responses import valid_response_id
from jan.services.run_records import record_path, thread_records
from jan.store.errors import InvalidArgumentError
from jan.store.files import check_file_id

_HEX = "0" * 32


@pytest.mark.parametrize("check, good", [
    (valid_conversation_id, "conv_abc"),
    (valid_item_id, "msg_abc"),
    (valid_response_id, "resp_abc"),
    (valid_name, "fs"),
    (lambda name: bool(TOOL_NAME_RE.match(name)), "get_weather"),
])
def test_a_line_end_after_an_id_makes_it_none(check, good):
    assert check(good)
    assert not check(good + "\n")


def test_a_line_end_after_a_run_or_file_id_makes_it_none(tmp_path):
    record_path(tmp_path, "thread_a", "run_a")
    with pytest.raises(ValueError):
        record_path(tmp_path, "thread_a\n", "run_a")
    with pytest.raises(ValueError):
        record_path(tmp_path, "thread_a", "run_a\n")
    assert thread_records(tmp_path, "thread_a\n") == []
    assert check_file_id(f"img-{_HEX}.png") == f"img-{_HEX}.png"
    with pytest.raises((InvalidArgumentError, ValueError)):
        check_file_id(f"img-{_HEX}.png\n")


def test_a_line_end_after_an_extension_name_makes_it_none():
    from jan.core import manager

    assert manager._NAME_RE.match("@jan/x") and not manager._NAME_RE.match("@jan/x\n")
