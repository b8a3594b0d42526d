"""The one rule a name that is none is matched to the one it likely meant by: a model id, a command, a file beside a
path that is not there. Small and free of jan's services, so that the engine's own errors (a model file not found)
can use it."""

from __future__ import annotations

__all__ = ["TYPO_SIMILARITY", "closest_model_id"]

#: How alike (difflib's ratio of the case-folded ids) a name must be to a model id to be taken for a typo of it:
#: 0.8 is one wrong, missing or extra character in ids of 10 or so (``storis260K``, ``stories260KK``), never
#: another model of the same family (``stories15M`` is 0.76 to ``stories260K``).
TYPO_SIMILARITY = 0.8


def closest_model_id(model_id: str, ids) -> str | None:
    """The one rule of :meth:`ModelService.meant`, for a list of ids at hand (the CLI's data folder): the id that
    differs from ``model_id`` only in case or by a ``.gguf`` suffix; else the one id that is a likely typo of it
    (:data:`TYPO_SIMILARITY`, as git's and cargo's "did you mean" name a near command); else None. Where two ids
    are as near, neither is named: a guess between them would send the user to the wrong one half the time."""
    wanted = model_id.strip().removesuffix(".gguf").casefold()
    known = [i for i in ids if isinstance(i, str) and i != model_id]
    close = sorted(i for i in known if i.casefold() == wanted)
    if close:
        return close[0]
    if not wanted:
        return None
    import difflib  # (a mistyped id's guess alone needs it: 0.15 MiB a server would hold from its start)

    scored = sorted(((difflib.SequenceMatcher(None, wanted, i.casefold()).ratio(), i) for i in known), reverse=True)
    if not scored or scored[0][0] < TYPO_SIMILARITY or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1]
