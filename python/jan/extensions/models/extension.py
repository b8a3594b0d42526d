"""ModelExtension over the data folder: list/import/edit/delete model.json, pull from URLs."""

from __future__ import annotations

import asyncio
import copy
import os
from pathlib import Path
from typing import Any

from jan.core import ModelExtension
from jan.extensions._builtin import BuiltinExtension
from jan.downloads import Downloader, filename_from_url, resolve_url
from jan.errors import ModelLoadError, ModelNotFoundError
from jan.extensions.models.downloads import ModelPull
from jan.extensions.models.gguf_info import describe_gguf
from jan.hf_repo import plan_pull, sibling_mmproj
from jan.store import AsyncStore, DataFolder, NotFoundError, slugify_id, validate_id
from jan.store.stamps import FileStamp, stamps

class ModelManagerExtension(BuiltinExtension, ModelExtension):
    name = "models"
    description = "Models in the data folder: import, edit, delete and download GGUF files"

    def __init__(self) -> None:
        self.store: AsyncStore | None = None
        self.downloader: Downloader | None = None
        self._pulls: dict[str, ModelPull] = {}
        # model id -> (model_with_weights' answer, the files it came from, their stamps)
        self._resolved: dict[str, tuple[dict[str, Any], tuple[Path, ...], tuple[FileStamp, ...]]] = {}

    async def on_load(self, ctx) -> None:
        self._ctx = ctx
        self.store = AsyncStore(DataFolder(ctx.data_folder))
        self.downloader = Downloader()

    async def on_unload(self) -> None:
        if self.downloader is not None:
            await self.downloader.close()

    async def list_models(self) -> list[dict[str, Any]]:
        return await self.store.models.list()

    async def get_model(self, model_id: str) -> dict[str, Any]:
        try:
            return await self.store.models.get(model_id)
        except NotFoundError:
            raise ModelNotFoundError(f"model '{model_id}' does not exist") from None

    async def model_with_weights(self, model_id: str) -> dict[str, Any]:
        """:meth:`get_model` with ``file_path``, ``mmproj_path`` and ``draft_model_path`` resolved, in one
        read of the model.json; the path of every inference request.

        The answer is kept while the files it came from keep their stamps (``os.stat`` of the model.json,
        its folder and the files it names: ~10 µs, here on the event loop). Reading them again in a worker
        thread on every request cost 4–13 ms per request when eight arrived at once (the hop waits for a
        free core and the GIL), most of the time to first token of a short request."""
        kept = self._resolved.get(model_id)
        if kept is not None and stamps(kept[1]) == kept[2]:
            return copy.deepcopy(kept[0])
        try:
            doc, paths, taken = await self.store.models.with_weights_stamped(model_id)
        except NotFoundError:
            self._resolved.pop(model_id, None)
            raise ModelNotFoundError(f"model '{model_id}' does not exist") from None
        if taken is None:
            self._resolved.pop(model_id, None)
        else:
            self._resolved[model_id] = (copy.deepcopy(doc), paths, taken)
        return doc

    async def model_file(self, model_id: str) -> str | None:
        path = await self.store.models.model_file(model_id)
        return str(path) if path else None

    async def mmproj_file(self, model_id: str) -> str | None:
        path = await self.store.models.mmproj_file(model_id)
        return str(path) if path else None

    async def draft_model_file(self, model_id: str) -> str | None:
        path = await self.store.models.draft_model_file(model_id)
        return str(path) if path else None

    async def import_model(self, path: str, *, model_id: str | None = None, mode: str = "symlink",
                           mmproj: str | None = None, **fields: Any) -> dict[str, Any]:
        """Import a GGUF; ``mmproj``: its projector (referenced in place, ``settings.mmproj``). A
        projector beside the model (``mmproj-<model file name>``, or the folder's only
        ``*mmproj*.gguf``: :func:`jan.hf_repo.sibling_mmproj`) is picked up by itself."""
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise ValueError(f"path: no file at '{path}'")
        if mmproj is None:
            mmproj = (fields.get("settings") or {}).get("mmproj")
        if mmproj is None and "mmproj" not in os.path.basename(path).lower():
            mmproj = await asyncio.to_thread(sibling_mmproj, path)
        if mmproj is not None:
            mmproj = os.path.abspath(os.path.expanduser(mmproj))
            if not os.path.isfile(mmproj):
                raise ValueError(f"mmproj: no file at '{mmproj}'")
            fields["settings"] = {**(fields.get("settings") or {}), "mmproj": mmproj}
        try:
            info = await asyncio.to_thread(describe_gguf, path)  # also proves it is a loadable GGUF
        except ModelLoadError as exc:
            raise ValueError(f"path: {exc}") from None
        model_id = model_id or slugify_id(os.path.splitext(os.path.basename(path))[0])
        validate_id(model_id)
        settings = {**info["settings"], **(fields.pop("settings", None) or {})}
        return await self.store.models.import_gguf(
            path, model_id=model_id, mode=mode, name=fields.pop("name", None) or info["name"],
            description=fields.pop("description", ""), settings=settings,
            parameters=fields.pop("parameters", None), metadata={**info["metadata"], **(fields.pop("metadata", None) or {})},
            engine=fields.pop("engine", "llama.cpp"))

    async def create_model(self, model: dict[str, Any]) -> dict[str, Any]:
        """Add a model.json as given (e.g. from a model hub); ``AlreadyExistsError`` if the id is taken."""
        return await self.store.models.create(model)

    async def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        await self.get_model(model_id)
        return await self.store.models.update(model_id, patch)

    async def delete_model(self, model_id: str) -> None:
        await self.get_model(model_id)
        await self.store.models.delete(model_id)

    async def pull(self, source: str, model_id: str | None = None, *, sha256: str | None = None) -> ModelPull:
        """Download a model: an http(s) URL or ``hf://`` file of a GGUF, or a whole
        ``hf://owner/repo[:QUANT]`` (its model and projector chosen from its file list, as
        llama-server's ``-hf`` does). A repository's ``mmproj`` GGUF comes along and is set as
        the model's projector (:mod:`jan.hf_repo`); ``sha256`` checks the model file."""
        plan = await plan_pull(source)
        url = resolve_url(plan.model_url)
        filename = filename_from_url(url)
        model_id = model_id or slugify_id(os.path.splitext(filename)[0])
        validate_id(model_id)
        running = self._pulls.get(model_id)
        if running is not None and running.status()["state"] in ("queued", "downloading"):
            return running
        folder = await self.store.models.folder(model_id)
        await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
        dest = os.path.join(folder, filename)
        download = self.downloader.start(url, dest, sha256=sha256)
        extra, mmproj = [], None
        if plan.mmproj_url is not None:
            mmproj_url = resolve_url(plan.mmproj_url)
            mmproj = os.path.join(folder, filename_from_url(mmproj_url))
            extra.append(self.downloader.start(mmproj_url, mmproj))

        async def register() -> dict[str, Any]:
            info = await asyncio.to_thread(describe_gguf, dest)
            return await self._register_downloaded(model_id, dest, plan.model_url, info, mmproj, plan.mmproj_url)

        pull = ModelPull(download, model_id, self._ctx.bus, register, extra=extra)
        self._pulls[model_id] = pull
        return pull

    async def _register_downloaded(self, model_id: str, dest: str, source: str, info: dict,
                                   mmproj: str | None = None, mmproj_source: str | None = None) -> dict[str, Any]:
        settings = {**info["settings"], "llama_model_path": os.path.basename(dest)}
        sources = [{"filename": os.path.basename(dest), "url": source}]
        if mmproj is not None:
            settings["mmproj"] = os.path.basename(mmproj)  # relative to the model folder
            sources.append({"filename": os.path.basename(mmproj), "url": mmproj_source})
        doc = {
            "id": model_id,
            "object": "model",
            "name": info["name"],
            "version": "1.0",
            "description": "",
            "format": "gguf",
            "sources": sources,
            "settings": settings,
            "parameters": {},
            "metadata": info["metadata"],
            "engine": "llama.cpp",
        }
        return await self.store.models.create(doc, overwrite=True)

    async def cancel_pull(self, task_id: str) -> bool:
        pull = self._pulls.get(task_id)
        if pull is None or pull.status()["state"] not in ("queued", "downloading"):
            return False
        await pull.cancel()
        return True

    async def list_downloads(self) -> list[ModelPull]:
        return list(self._pulls.values())
