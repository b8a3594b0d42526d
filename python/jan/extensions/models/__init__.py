"""The built-in model manager: model.json files in the data folder, imports and downloads."""

from jan.extensions.models.extension import ModelManagerExtension

__all__ = ["ModelManagerExtension"]
