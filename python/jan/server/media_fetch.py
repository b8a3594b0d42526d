"""Images given by URL or file path, for a server started with ``--allow-media-from``.

By default the server takes images only inline (base64 ``data:`` URLs): fetching a URL a
client names lets any client make the server read the network or its disk. With
``jan serve --allow-media-from PREFIX`` (repeatable), an ``image_url`` (OpenAI), an image
block's ``url`` source (Anthropic) or an ``input_image`` URL (Responses) may also be

* an ``http(s)://`` URL starting with an allowed URL prefix (``https://`` allows every
  https URL; ``https://images.example.com/`` one host), fetched with aiohttp — redirects are
  followed only to URLs that are allowed too, at most :data:`MAX_REDIRECTS`;
* a local file (``file:///abs/path`` or ``/abs/path``) inside an allowed folder (symlinks
  resolved first, so none leads out of it), read in a worker thread.

Either way the bytes are bounded (:attr:`MediaFetcher.max_bytes`, checked on the
``Content-Length`` and again while reading) and so is the time; a refused or failed fetch is
a :class:`jan.MediaError` (400) naming the field. The fetched file replaces the URL in the
wire body as a ``data:`` URL, so the dialects' parsers and the typed path stay as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from pydantic import BaseModel
from yarl import URL

from jan.errors import MediaError
from jan.image_types import b64decode, b64encode_text, data_url_media, parse_data_url, sniff_image
from jan.local_files import expand_home, open_regular_file
from jan.server.aiohttp_import import load_client
from jan.server.body_size import body_step

MAX_REDIRECTS = 3
#: Said where a URL of this machine or a private network is refused: a bare scheme prefix does not cover them.
NAME_LOCAL_HOSTS = ": a bare http:// or https:// allows public hosts only; name this host to allow it"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # one image, as the engine's limit
DEFAULT_TIMEOUT_S = 30.0


class MediaFolderError(ValueError):
    """An ``--allow-media-from`` folder the disk does not have (or a file in its place): the state of the file
    system, which ``jan serve`` says as a runtime error (exit 1), not as a mistake in the command line."""


@dataclass(frozen=True)
class MediaAllowlist:
    """Where images may come from: URL prefixes and local folders (empty: inline images only)."""

    url_prefixes: tuple[str, ...] = ()
    folders: tuple[Path, ...] = ()

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...]) -> "MediaAllowlist":
        """From ``--allow-media-from`` values: ``http(s)://...`` prefixes or folders (made absolute).
        Raises ``ValueError`` for anything else (another scheme, a folder that does not exist)."""
        urls, folders = [], []
        for entry in entries:
            if not entry.strip():
                # Path("") is the current folder: an unset shell variable would open the server's working folder
                raise ValueError(f"--allow-media-from {entry!r}: empty; give an http(s):// URL prefix or a folder")
            scheme = entry.split("://", 1)[0].lower() if "://" in entry else ""
            if scheme in ("http", "https"):
                rest = entry.split("://", 1)[1]
                # a bare host ends at its "/": https://example.com must not allow https://example.com.evil.org
                urls.append(_canonical_url(entry + "/" if rest and "/" not in rest else entry) or entry.lower())
            elif scheme in ("", "file"):
                path = expand_home(unquote(urlsplit(entry).path) if scheme == "file" else entry)
                if not path.is_dir():
                    raise MediaFolderError(f"--allow-media-from: {path} is not a folder" if path.exists()
                                           else f"--allow-media-from: no such folder: {path}")
                folders.append(Path(os.path.realpath(path)))
            else:
                raise ValueError(f"--allow-media-from {entry!r}: give an http(s):// URL prefix or a folder")
        return cls(tuple(urls), tuple(folders))

    def __bool__(self) -> bool:
        return bool(self.url_prefixes or self.folders)

    def allows_url(self, url: str) -> bool:
        """Whether the URL the HTTP client will ask for is under an allowed prefix. Compared as the client sends
        it, not as written: aiohttp (and httpx) remove dot segments, so ``https://host/pub/../admin/x`` written
        under the prefix ``https://host/pub/`` asked the host for ``/admin/x``; and ``HTTPS://Host/pub/`` is that
        prefix's URL (a scheme and a host are case-insensitive). A URL whose host is this machine or a private
        network's address (:func:`local_host`) is allowed only by a prefix naming that host: a bare ``https://``
        ("any") let every client have the server fetch from itself, its LAN or a cloud's metadata address."""
        canonical = _canonical_url(url)
        if canonical is None:
            return False
        local = local_host(url)
        return any(canonical.startswith(prefix) and not (local and prefix.endswith("://"))
                   for prefix in self.url_prefixes)

    def allows_path(self, path: Path) -> bool:
        return any(path == folder or folder in path.parents for folder in self.folders)


def local_host(url: str) -> bool:
    """Whether ``url``'s host is written as this machine (``localhost``, ``*.localhost``) or as an address no
    public host has: loopback, private, link-local (``169.254.169.254``, a cloud's metadata service), unspecified,
    reserved, IPv4-mapped forms of these, and the numeric spellings the resolver reads as IPv4 (``2130706433``,
    ``0x7f.1``, ``127.1``). A name that DNS resolves to such an address is not seen here."""
    try:
        host = URL(url).host
    except (ValueError, TypeError):
        return False
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # (inet_aton: the legacy spellings getaddrinfo takes too; no DNS is asked)
            address = ipaddress.ip_address(socket.inet_aton(host)) if host[-1:].isalnum() and \
                all(c in "0123456789abcdefx." for c in host) else None
        except OSError:
            address = None
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


def _canonical_url(url: str) -> str | None:
    """``url`` as aiohttp requests it (yarl's form: scheme and host in lower case, a default port dropped, dot
    segments removed, the path percent-encoded one way), or None when it has no host or does not parse. The
    allowlist's prefixes are kept in this form too, so both sides of a comparison are spelled alike."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    return str(parsed) if parsed.absolute and parsed.host else None


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


class MediaFetcher:
    """Fetches allowed image URLs and files into ``data:`` URLs; one aiohttp session, closed by :meth:`close`."""

    def __init__(self, allowlist: MediaAllowlist, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.allowlist = allowlist
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def data_url(self, url: str, param: str) -> str:
        """``url`` itself when it is a ``data:`` URL, else the allowed file it names as one.
        Raises :class:`MediaError` (``not_allowed``, ``too_large``, ``fetch_failed``,
        ``unsupported_format``) naming ``param``."""
        if is_data_url(url):
            return url
        data = await self.fetch(url, param)
        mime = sniff_image(data)
        if mime is None:
            raise MediaError(f"{param}: {url} is not a PNG, JPEG, WebP or GIF image", reason="unsupported_format",
                             param=param)
        return f"data:{mime};base64," + b64encode_text(data)

    async def fetch(self, url: str, param: str) -> bytes:
        """The bytes of the allowed ``http(s)://`` URL or local file (``file://`` or an absolute path) ``url``
        names, whatever they are (a document's as well as an image's; the caller tells their type). Raises
        :class:`MediaError` (``not_allowed``, ``too_large``, ``fetch_failed``) naming ``param``."""
        if not self.allowlist:
            raise MediaError(f"{param}: only base64 data URLs (data:<type>;base64,...) are accepted; this server "
                             "fetches no URLs or files (start it with --allow-media-from)",
                             reason="not_allowed", param=param)
        try:
            scheme = urlsplit(url).scheme.lower() if "://" in url else ""
            path = Path(unquote(urlsplit(url).path) if scheme == "file" else url)
        except ValueError as exc:  # urlsplit's "Invalid IPv6 URL": the field's 400, not a bare one
            raise MediaError(f"{param}: not a valid URL: {exc}", reason="fetch_failed", param=param) from None
        if "\0" in url or "\0" in str(path):  # (the OS refuses a NUL in a path with a bare ValueError)
            raise MediaError(f"{param}: not a valid URL or path: it holds a NUL character", reason="fetch_failed",
                             param=param)
        if scheme in ("http", "https"):
            data = await self._fetch(url, param)
        elif scheme == "file" or (not scheme and url.startswith("/")):
            data = await self._read(path, param)
        else:
            raise MediaError(f"{param}: expected a data:, http(s):// or file:// URL or an absolute path",
                             reason="not_allowed", param=param)
        return data

    def _too_large(self, param: str, url: str) -> MediaError:
        return MediaError(f"{param}: {url} is over {self.max_bytes} bytes", reason="too_large", param=param)

    async def _read(self, path: Path, param: str) -> bytes:
        def read() -> bytes:
            real = Path(os.path.realpath(path))
            if not self.allowlist.allows_path(real):
                raise MediaError(f"{param}: {path} is not in a folder this server may read media from "
                                 "(--allow-media-from)", reason="not_allowed", param=param)
            try:
                # Non-blocking, and only a regular file: opening a named pipe (FIFO) in an allowed folder waits for
                # a writer forever, holding the request and a worker thread (enough of them and every request
                # that needs one stalls); a device is no picture either.
                with open_regular_file(real) as f:
                    data = f.read(self.max_bytes + 1)
            except OSError as exc:
                raise MediaError(f"{param}: cannot read {path}: {exc.strerror or exc}", reason="fetch_failed",
                                 param=param) from None
            if len(data) > self.max_bytes:
                raise self._too_large(param, str(path))
            return data

        return await asyncio.to_thread(read)

    async def _fetch(self, url: str, param: str) -> bytes:
        if self._session is None:
            await load_client()  # (off the loop, the first time: jan.server.aiohttp_import)
            if self._session is None:  # (another fetch may have opened it while this one waited)
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allowlist.allows_url(url):
                raise MediaError(f"{param}: {url} is not under a URL prefix this server may fetch from "
                                 "(--allow-media-from" + (NAME_LOCAL_HOSTS + ")" if local_host(url) else ")"),
                                 reason="not_allowed", param=param)
            try:
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise MediaError(f"{param}: fetching {url} answered HTTP {response.status}",
                                         reason="fetch_failed", param=param)
                    if (response.content_length or 0) > self.max_bytes:
                        raise self._too_large(param, url)
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(1 << 16):
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise self._too_large(param, url)
                    return bytes(body)
            except asyncio.TimeoutError:
                # (a TimeoutError's str() is empty: the message said "cannot fetch URL: " and no more)
                raise MediaError(f"{param}: cannot fetch {url}: no answer within {self.timeout_s:g} seconds",
                                 reason="fetch_failed", param=param) from None
            except aiohttp.ClientError as exc:
                raise MediaError(f"{param}: cannot fetch {url}: {str(exc) or type(exc).__name__}",
                                 reason="fetch_failed", param=param) from None
        raise MediaError(f"{param}: {url}: more than {MAX_REDIRECTS} redirects", reason="fetch_failed", param=param)


# -- request bodies --------------------------------------------------------------------------
def _image_urls(node: Any, where: str, found: list[tuple[Callable[[str], None], str, str]]) -> None:
    """Every image given by URL in a validated wire body: (setter for its data: URL, url, param)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _image_urls(item, f"{where}[{i}]", found)
        return
    if not isinstance(node, BaseModel):
        return
    kind = wire_type(node)
    if kind == "image_url" and isinstance(getattr(node, "image_url", None), dict):  # OpenAI chat
        url = node.image_url.get("url")
        if isinstance(url, str) and not is_data_url(url):
            set_url = lambda new, n=node: setattr(n, "image_url", {**n.image_url, "url": new})  # noqa: E731
            bare = bare_base64_image(url)
            if bare is not None:
                set_url(bare)
            else:
                found.append((set_url, url, f"{where}.image_url.url"))
        return
    if kind == "input_image" and isinstance(getattr(node, "image_url", None), str):  # Responses
        if not is_data_url(node.image_url):
            bare = bare_base64_image(node.image_url)
            if bare is not None:
                node.image_url = bare
            else:
                found.append((lambda new, n=node: setattr(n, "image_url", new), node.image_url, f"{where}.image_url"))
        return
    source = getattr(node, "source", None) if kind == "image" else None
    if getattr(source, "type", None) == "url":  # Anthropic
        from jan.server.dialects.anthropic import Base64Source

        def to_base64(new: str, n=node, param=f"{where}.source.url") -> None:
            # a data: URL given as the source's url, or the one a fetch made: read as every dialect reads one
            # (jan.image_types), its errors naming source.url. (It was split by hand: a data: URL that was not
            # base64 was taken, an upper-case or typeless one refused, and those errors named "data" and
            # "media_type", fields the client never sent.) The type is the bytes' own, as a fetched file's: a
            # URL declares none the Base64Source's check could hold it to.
            data, declared = data_url_media(new, param)
            media_type = sniff_image(data) or declared or "application/octet-stream"
            # (checked here, so built unchecked: the engine refuses bytes of no image it decodes, naming the block)
            n.source = Base64Source.model_construct(type="base64", media_type=media_type,
                                                    data=parse_data_url(new)[1])  # type: ignore[index]

        found.append((to_base64, source.url, f"{where}.source.url"))
        return
    for name in type(node).model_fields:
        value = getattr(node, name, None)
        if isinstance(value, (list, BaseModel)):
            _image_urls(value, f"{where}.{name}" if where else name, found)


def bare_base64_image(url: str) -> str | None:
    """A data: URL of ``url`` where it is no URL but bare base64 of a PNG, JPEG, WebP or GIF file: llama-server reads
    an ``image_url.url`` that way (its clients send it), as jan reads llama-server's ``multimodal_data`` and Ollama's
    ``images`` (jan.image_types). Judged by the first bytes alone (the whole is decoded, strictly, with the image):
    a path or URL is never base64 of those magic bytes. None otherwise."""
    head = "".join(url[:64].split())[:16]
    if len(head) < 16:
        return None
    try:
        mime = sniff_image(b64decode(head))
    except ValueError:
        return None
    return f"data:{mime};base64,{url}" if mime else None


def wire_type(node: BaseModel) -> Any:
    """A wire model's ``type`` field, None for a model without one. (Not ``getattr(node, "type", None)``: on a
    model without the field that goes through pydantic's ``__getattr__`` and an AttributeError, which made
    walking 470,000 messages take seconds.)"""
    return getattr(node, "type", None) if "type" in type(node).model_fields else None


async def fetch_body_images(body: BaseModel, fetcher: MediaFetcher | None) -> None:
    """Replace, in place, each image a request body gives by URL or path with a ``data:`` URL of
    the file (fetched concurrently). Without a fetcher (or with an empty allowlist) any such URL
    is a :class:`MediaError` ``not_allowed`` naming its field."""
    found: list[tuple[Callable[[str], None], str, str]] = []
    await body_step(_image_urls, body, "", found)  # a walk over the whole body: off the loop for a big one
    if not found:
        return
    fetcher = fetcher or MediaFetcher(MediaAllowlist())
    from jan.server.disconnect import while_client_waits  # (it imports jan.server.keys, which imports this module)

    # (cancelled, each fetch with it, when the request's client leaves: jan.server.disconnect)
    urls = await while_client_waits(asyncio.gather(*(fetcher.data_url(url, param) for _, url, param in found)))
    for (set_url, _, _), url in zip(found, urls):
        set_url(url)
