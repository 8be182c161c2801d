"""The reference remote hub: a Starlette app over HubCore, storage owned by an actor.

- :mod:`actors.wire`: the wire shapes, shared with :mod:`actors.remote`;
- :mod:`actors.hub.core`: ``HubCore``, the request logic as a plain class;
- storage, one concern a module: :mod:`actors.hub.backend` (``HubBackend``, what
  HubCore calls; ``Cursor``), :mod:`actors.hub.engine` (``HubEngine``, what an
  owner of the data calls, and its error contract), :mod:`actors.hub.database`
  (``HubDatabase``, the SQLite engine) on :mod:`actors.hub.schema` (the hub
  file's migrations), :mod:`actors.hub.store` (``HubStoreActor``, the engine's
  owner while the hub serves), :mod:`actors.hub.direct` (``DirectBackend``, the
  engine in the caller's thread), :mod:`actors.hub.key_admin` (the CLI's key
  administration) and :mod:`actors.hub.keys` (pure key helpers);
- :mod:`actors.hub.messages`: the messages between the hub's actors;
- :mod:`actors.hub.service`: ``HubService``, which starts and stops the actors;
- :mod:`actors.hub.search`, :mod:`actors.hub.embedders`, :mod:`actors.hub.vectors`,
  :mod:`actors.hub.semantic`: semantic recall (ranking rules and records, the
  pluggable embedders, the vector index, the EmbedderActor and VectorIndexActor);
- :mod:`actors.hub.app`: the Starlette app (``create_app``), served by uvicorn;
- :mod:`actors.hub.transport`: ``mock_transport(core)`` for in-process use;
- :mod:`actors.hub.openapi`: the OpenAPI document;
- :mod:`actors.hub.cli`: the ``hub`` click group (``serve``, ``keys ...``).

``docs/hub-protocol.md`` describes the protocol. Importing this package loads
no web framework: the submodules are imported where used.
"""

from __future__ import annotations

__all__: list[str] = []
