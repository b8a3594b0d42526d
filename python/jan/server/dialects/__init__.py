"""Wire formats of the API dialects jan speaks besides OpenAI chat completions.

Each module parses one dialect's request body (pydantic models at the edge) into the typed
:class:`jan.services.types.ChatRequest` and formats the typed ``ChatDelta``/``ChatResult``
back into that dialect's objects and streamed events. No HTTP here (the routes in
``jan.server.routes`` do that) and no prompt building, sampling defaults or saving logic:
those belong to the chat service and the store.
"""
