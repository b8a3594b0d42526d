"""The one rule a name that is none is matched to the one it likely meant by: a model id, a command, a file beside a
path that is not there. Small and free of jan's services, so that the engine's own errors (a model file not found)
can use it."""

from __future__ import annotations

__all__ = ["TYPO_SIMILARITY", "closest_model_id", "keywords_named", "with_guess", "without_ollama_defaults"]

#: How alike (difflib's ratio of the case-folded ids) a name must be to a model id to be taken for a typo of it:
#: 0.8 is one wrong, missing or extra character in ids of 10 or so (``storis260K``, ``stories260KK``), never
#: another model of the same family (``stories15M`` is 0.76 to ``stories260K``).
TYPO_SIMILARITY = 0.8

#: The parts of an Ollama model name that Ollama fills in when a name leaves them out (``llama3`` is
#: ``registry.ollama.ai/library/llama3:latest``), lower-cased: Ollama compares names' parts case-insensitively.
OLLAMA_DEFAULT_HOST, OLLAMA_DEFAULT_NAMESPACE, OLLAMA_DEFAULT_TAG = "registry.ollama.ai", "library", "latest"


def without_ollama_defaults(name: str) -> str:
    """``name`` without the parts Ollama fills in — the tag ``latest``, the namespace ``library`` and the host
    ``registry.ollama.ai`` (any case, as Ollama reads them) — since jan's model ids have none of them, so
    ``library/llama3:latest`` is ``llama3``. Any other tag, namespace or host is kept (``llama3:8b`` stays)."""
    path, colon, tag = name.rpartition(":")
    if colon and "/" not in tag and tag.lower() == OLLAMA_DEFAULT_TAG:
        name = path
    parts = name.split("/")
    if len(parts) == 3 and parts[0].lower() == OLLAMA_DEFAULT_HOST:
        parts = parts[1:]
    if len(parts) == 2 and parts[0].lower() == OLLAMA_DEFAULT_NAMESPACE:
        parts = parts[1:]
    return "/".join(parts)


def closest_model_id(model_id: str, ids) -> str | None:
    """The one rule of :meth:`ModelService.meant`, for a list of ids at hand (the CLI's data folder): the id that
    differs from ``model_id`` only in case or by a ``.gguf`` suffix; else the id a model imported from a file of
    that name got (``my mödel (v2).gguf`` -> ``my-model-v2``, :func:`jan.store.ids.slugify_id`); else the one id that is a likely typo of it
    (:data:`TYPO_SIMILARITY`, as git's and cargo's "did you mean" name a near command); else None. Where two ids
    are as near, neither is named: a guess between them would send the user to the wrong one half the time."""
    given = model_id.strip().removesuffix(".gguf")
    wanted = given.casefold()
    known = [i for i in ids if isinstance(i, str) and i != model_id]
    close = sorted(i for i in known if i.casefold() == wanted)
    if close:
        return close[0]
    if not wanted:
        return None
    if any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in given) and any(c.isalnum() for c in given):
        # a file's name, as the user knows the model (`my mödel (v2)`), where `jan models import` made it the id
        # `my-model-v2`: that id (imported here, off a server's start, since only a name that is no id needs it)
        from jan.store.ids import slugify_id

        slug = slugify_id(given).casefold()
        close = sorted(i for i in known if i.casefold() == slug)
        if close:
            return close[0]
    import difflib  # (a mistyped id's guess alone needs it: 0.15 MiB a server would hold from its start)

    scored = sorted(((difflib.SequenceMatcher(None, wanted, i.casefold()).ratio(), i) for i in known), reverse=True)
    if not scored or scored[0][0] < TYPO_SIMILARITY or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1]


def with_guess(name, names) -> str:
    """``name`` as an error tells an unknown one: with the one of ``names`` it likely meant, ``n_ctxx (did you mean
    'n_ctx'?)``, else as it is."""
    meant = closest_model_id(name, list(names)) if isinstance(name, str) else None
    return f"{name} (did you mean {meant!r}?)" if meant else str(name)


def keywords_named(fn):
    """``fn`` (a function or ``__init__`` of jan's Python API) refusing a keyword argument it has no parameter for
    with the :class:`TypeError` Python raises, naming the parameter it likely meant (``n_ctxx`` -> ``n_ctx``), as
    every other mistyped name in jan is told; checked before ``fn`` runs, so nothing is half done."""
    import functools
    import inspect

    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fn  # (it takes any keyword: its own check names them)
    names = [p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    known = frozenset(names)
    owner = fn.__qualname__.removesuffix(".__init__")

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        for name in kwargs:
            if name not in known:
                meant = closest_model_id(name, names)
                raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}"
                                + (f" (did you mean {meant!r}?)" if meant else ""))
        return fn(*args, **kwargs)

    return checked
