"""Remote inference (``"engine": "openai"`` in model.json): proxy to any OpenAI-compatible server.

See :mod:`jan.extensions.remote.upstream` for the model.json fields and
``docs/extensions.md`` for an example.
"""

from jan.extensions.remote.extension import RemoteInferenceExtension, RemoteSettings
from jan.extensions.remote.upstream import Upstream, UpstreamError, UpstreamRequestError

__all__ = ["RemoteInferenceExtension", "RemoteSettings", "Upstream", "UpstreamError", "UpstreamRequestError"]
