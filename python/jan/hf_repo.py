"""Which files of a Hugging Face repository to pull: the model GGUF and its projector (mmproj).

``hf://owner/repo`` (optionally ``@revision`` and ``:QUANT``, e.g. ``hf://owner/repo:Q8_0``)
names a whole repository, as llama-server's ``-hf owner/repo[:quant]`` does. The repository's
file list (the Hub's ``/api/models/<owner>/<repo>/tree/<revision>`` listing) decides:

* the model: a ``.gguf`` whose name does not contain ``mmproj`` — the one matching ``QUANT``
  when given, else the first of :data:`PREFERRED_QUANTS` present (Q4_K_M first, llama.cpp's
  default), else the first by name; split GGUFs are not handled (their first part only);
* the projector: a ``.gguf`` whose name contains ``mmproj`` (F16 preferred, then by name), if any.

A pull of one file (``hf://owner/repo/file.gguf``) also picks up the repository's projector.
Ollama's name for a repository, ``hf.co/owner/repo[:QUANT]`` (or ``huggingface.co/...``; the tag ``latest`` is
the default quant), is the same pull (:func:`canonical_source`), so what Ollama's docs tell users to pull works.
The endpoint and token are the downloader's (``JAN_HF_ENDPOINT``/``HF_ENDPOINT``, ``HF_TOKEN``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import aiohttp

from jan.server.aiohttp_import import load_client

# jan.downloads is imported by a listing or a pull's plan, not with this module: importing a GGUF (which looks for
# a projector beside it, sibling_mmproj) must not bring the downloader in (resident memory at start, issue 16).

PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q6_K", "Q8_0", "BF16", "F16", "F32")
_REPO = re.compile(r"^hf://([^/@:\s]+)/([^/@:\s]+)(?:@([^/:\s]+))?(?::([A-Za-z0-9_.-]+))?/?$")
_FILE = re.compile(r"^hf://([^/@\s]+)/([^/@\s]+)(?:@([^/\s]+))?/(.+)$")
LIST_TIMEOUT_S = 60
#: Ollama's (and ``ollama run``'s) name of a Hugging Face repository: ``hf.co/owner/repo[:QUANT]``
_HUB_NAME = re.compile(r"^(?:hf\.co|huggingface\.co)/([^/@:\s]+)/([^/@:\s]+?)(?::([A-Za-z0-9_.-]+))?/?$", re.IGNORECASE)


@dataclass(frozen=True)
class HFRepo:
    owner: str
    repo: str
    revision: str = "main"
    quant: str | None = None  # hf://owner/repo:QUANT
    file: str | None = None  # hf://owner/repo/path/file.gguf

    def file_url(self, path: str) -> str:
        """The ``hf://`` URL of one file of the repository (what the downloader takes)."""
        rev = "" if self.revision == "main" else "@" + quote(self.revision, safe="")
        return f"hf://{self.owner}/{self.repo}{rev}/{path}"


def canonical_source(source: str) -> str:
    """``source`` as jan's pulls name it: Ollama's ``hf.co/owner/repo[:QUANT]`` (or ``huggingface.co/...``) as
    ``hf://owner/repo[:QUANT]``, its tag ``latest`` (Ollama's default, a name without one) as no quant; any other
    source as it is."""
    found = _HUB_NAME.match(source.strip())
    if found is None:
        return source
    owner, repo, tag = found.groups()
    return f"hf://{owner}/{repo}" + (f":{tag}" if tag and tag.lower() != "latest" else "")


def pulled_model_id(name: str, models: "list[dict]") -> str | None:
    """The id of the model among ``models`` (model.json documents) that a pull of ``name`` made, where ``name`` is
    a whole repository in Ollama's spelling or jan's (``hf.co/owner/repo[:QUANT]``, ``hf://owner/repo[:QUANT]``):
    Ollama's clients pull a model by that name and then ask for it by the same name. Among the models whose first
    source is a file of that repository (owner and repository in any case, as the Hub reads them), the one whose
    file the pull would choose (:func:`pick_model`: the quant named, else the preferred one); None when there is
    none, or ``name`` names no repository."""
    repo = parse_hf(canonical_source(name))
    if repo is None or repo.file is not None:
        return None
    by_file: dict[str, str] = {}
    for model in models:
        sources = model.get("sources") if isinstance(model, dict) else None
        url = sources[0].get("url") if isinstance(sources, list) and sources and isinstance(sources[0], dict) else None
        pulled = parse_hf(url) if isinstance(url, str) else None
        if (pulled is not None and pulled.file is not None and pulled.owner.lower() == repo.owner.lower()
                and pulled.repo.lower() == repo.repo.lower() and isinstance(model.get("id"), str)):
            by_file.setdefault(pulled.file, model["id"])
    chosen = pick_model(list(by_file), repo.quant)
    return by_file[chosen] if chosen is not None else None


def parse_hf(url: str) -> HFRepo | None:
    """``hf://owner/repo[@rev][:QUANT]`` or ``hf://owner/repo[@rev]/file`` as an :class:`HFRepo`; else None."""
    url = url.strip()
    found = _REPO.match(url)
    if found:
        owner, repo, rev, quant = found.groups()
        return HFRepo(owner, repo, unquote(rev) if rev else "main", quant)
    found = _FILE.match(url)
    if found:
        owner, repo, rev, path = found.groups()
        return HFRepo(owner, repo, unquote(rev) if rev else "main", None, path)
    return None


async def list_files(repo: HFRepo, *, endpoint: str | None = None) -> list[str]:
    """Paths of the repository's files (recursive). Raises :class:`DownloadError`."""
    from jan.downloads import DownloadError, _hf_token, hf_endpoint

    base = (endpoint or hf_endpoint()).rstrip("/")
    url = (f"{base}/api/models/{quote(repo.owner, safe='')}/{quote(repo.repo, safe='')}/tree/"
           f"{quote(repo.revision, safe='')}?recursive=true")
    headers = {"Accept": "application/json"}
    token = _hf_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    await load_client()  # (off the loop, the first time: jan.server.aiohttp_import)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LIST_TIMEOUT_S)) as session:
            async with session.get(url, headers=headers) as response:
                if response.status in (401, 403, 404):
                    raise DownloadError(f"hf://{repo.owner}/{repo.repo}: no such repository or revision, or it is "
                                        f"private (HTTP {response.status}; set HF_TOKEN for gated models)",
                                        DownloadError.INVALID_URL, url=url, status=response.status)
                if response.status != 200:
                    raise DownloadError(f"listing hf://{repo.owner}/{repo.repo} answered HTTP {response.status}",
                                        DownloadError.HTTP_STATUS, url=url, status=response.status)
                entries = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DownloadError(f"cannot list hf://{repo.owner}/{repo.repo}: {str(exc) or type(exc).__name__}", DownloadError.NETWORK,
                            url=url) from None
    if not isinstance(entries, list):
        raise DownloadError(f"listing hf://{repo.owner}/{repo.repo}: unexpected answer", DownloadError.HTTP_STATUS,
                            url=url)
    return [e["path"] for e in entries if isinstance(e, dict) and e.get("type", "file") == "file"
            and isinstance(e.get("path"), str)]


def _is_gguf(path: str) -> bool:
    return path.lower().endswith(".gguf")


def pick_model(files: list[str], quant: str | None = None) -> str | None:
    """The model GGUF to pull from a repository's files (see the module docstring)."""
    models = sorted(f for f in files if _is_gguf(f) and "mmproj" not in f.lower().rsplit("/", 1)[-1])
    if quant:
        matching = [f for f in models if quant.lower() in f.lower()]
        return matching[0] if matching else None
    for preferred in PREFERRED_QUANTS:
        matching = [f for f in models if preferred.lower() in f.lower()]
        if matching:
            return matching[0]
    return models[0] if models else None


def pick_mmproj(files: list[str]) -> str | None:
    """The projector GGUF among a repository's files, or None."""
    projectors = sorted(f for f in files if _is_gguf(f) and "mmproj" in f.lower().rsplit("/", 1)[-1])
    f16 = [f for f in projectors if "f16" in f.lower()]
    return (f16 or projectors or [None])[0]


@dataclass(frozen=True)
class PullPlan:
    """What a pull downloads: the model's URL (http(s) or ``hf://.../file``) and its projector's, if any."""

    model_url: str
    mmproj_url: str | None = None


async def plan_pull(source: str, *, endpoint: str | None = None) -> PullPlan:
    """The files to download for ``source``: a whole ``hf://owner/repo[:QUANT]`` is listed and its
    model and projector chosen; a single ``hf://`` file gets the repository's projector beside it
    (when the listing fails, the file alone); other URLs are pulled as they are. Raises
    :class:`DownloadError` (``invalid_url``) for a repository without a matching GGUF."""
    from jan.downloads import DownloadError

    source = canonical_source(source)
    repo = parse_hf(source)
    if repo is None:
        return PullPlan(source)
    if repo.file is None:
        files = await list_files(repo, endpoint=endpoint)
        model = pick_model(files, repo.quant)
        if model is None:
            wanted = f" matching '{repo.quant}'" if repo.quant else ""
            raise DownloadError(f"{source}: the repository has no GGUF model file{wanted}", DownloadError.INVALID_URL,
                                url=source)
        mmproj = pick_mmproj(files)
        return PullPlan(repo.file_url(model), repo.file_url(mmproj) if mmproj else None)
    if "mmproj" in repo.file.lower().rsplit("/", 1)[-1]:
        return PullPlan(source)
    try:
        mmproj = pick_mmproj(await list_files(repo, endpoint=endpoint))
    except DownloadError:
        mmproj = None  # a mirror without the listing API: the model file alone, as asked
    return PullPlan(source, repo.file_url(mmproj) if mmproj else None)


def sibling_mmproj(model_path: str) -> str | None:
    """A projector beside a model file: ``mmproj-<model file name>``, else the folder's only
    ``*mmproj*.gguf`` (what a repository downloaded as a whole looks like), else None."""
    import os

    folder, name = os.path.split(os.path.abspath(model_path))
    exact = os.path.join(folder, "mmproj-" + name)
    if os.path.isfile(exact):
        return exact
    try:
        found = [f for f in os.listdir(folder) if _is_gguf(f) and "mmproj" in f.lower() and f != name
                 and os.path.isfile(os.path.join(folder, f))]
    except OSError:
        return None
    return os.path.join(folder, found[0]) if len(found) == 1 else None
