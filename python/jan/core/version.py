"""The version of jan's extension API and a small version-specifier matcher.

``API_VERSION`` is bumped in its minor part when the interfaces gain
something (old extensions keep working) and in its major part when
something an extension relies on changes or goes away. An extension states
what it was written against in ``requires_api``, with the comparison syntax
of Python packaging specifiers::

    requires_api = ">=1,<2"      # any 1.x
    requires_api = "~=1.0"       # same: 1.0 or later, below 2
    requires_api = "==1.*"

Only the subset below is understood (no pre-releases, no local versions);
anything else makes the extension incompatible with a clear reason rather
than loading it on a guess.
"""

from __future__ import annotations

import re

__all__ = ["API_VERSION", "InvalidSpecifier", "check_api", "version_matches"]

#: The extension API this jan provides.
API_VERSION = "1.0"

_VERSION_RE = re.compile(r"^\d+(\.\d+)*$")
_CLAUSE_RE = re.compile(r"^\s*(~=|===|==|!=|>=|<=|>|<)\s*([0-9][0-9.]*(?:\.\*)?)\s*$")


class InvalidSpecifier(ValueError):
    """A ``requires_api`` string that the matcher does not understand."""


def _parse(version: str) -> tuple[int, ...]:
    if not _VERSION_RE.match(version):
        raise InvalidSpecifier(f"invalid version {version!r}")
    return tuple(int(p) for p in version.split("."))


def _pad(a: tuple[int, ...], n: int) -> tuple[int, ...]:
    return a + (0,) * (n - len(a))


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = _pad(a, n), _pad(b, n)
    return (a > b) - (a < b)


def _clause_matches(op: str, spec: str, version: tuple[int, ...]) -> bool:
    if spec.endswith(".*"):
        if op not in ("==", "!="):
            raise InvalidSpecifier(f"'.*' is only allowed with == and !=, not {op}")
        prefix = _parse(spec[:-2])
        same = _pad(version, len(prefix))[: len(prefix)] == prefix
        return same if op == "==" else not same
    target = _parse(spec)
    c = _cmp(version, target)
    if op in ("==", "==="):
        return c == 0
    if op == "!=":
        return c != 0
    if op == ">=":
        return c >= 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    if op == "<":
        return c < 0
    # ~=X.Y  means  >=X.Y, ==X.*  ;  ~=X.Y.Z means >=X.Y.Z, ==X.Y.*
    if len(target) < 2:
        raise InvalidSpecifier(f"'~={spec}' needs at least two version parts")
    prefix = target[:-1]
    return c >= 0 and _pad(version, len(prefix))[: len(prefix)] == prefix


def version_matches(specifier: str, version: str) -> bool:
    """Whether ``version`` satisfies every comma-separated clause of ``specifier``.

    An empty specifier matches everything. Raises :class:`InvalidSpecifier`
    for syntax it does not understand.
    """
    v = _parse(version)
    clauses = [c for c in specifier.split(",") if c.strip()]
    for clause in clauses:
        m = _CLAUSE_RE.match(clause)
        if not m:
            raise InvalidSpecifier(f"invalid version specifier clause {clause.strip()!r}")
        if not _clause_matches(m.group(1), m.group(2), v):
            return False
    return True


def check_api(requires_api: object, api_version: str = API_VERSION) -> str | None:
    """``None`` if an extension requiring ``requires_api`` can run on ``api_version``.

    Otherwise a sentence saying why not, fit to show a user. ``None`` or an
    empty string as ``requires_api`` means "any version".
    """
    if requires_api is None or requires_api == "":
        return None
    if not isinstance(requires_api, str):
        return f"requires_api must be a version specifier string such as '>=1,<2', not {requires_api!r}"
    try:
        ok = version_matches(requires_api, api_version)
    except InvalidSpecifier as exc:
        return f"requires_api {requires_api!r} is not a valid version specifier ({exc})"
    if not ok:
        return f"requires jan extension API {requires_api}, but this jan provides API {api_version}"
    return None
