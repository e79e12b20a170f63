"""The ingest API: an authenticated HTTP front door that validates events and queues them.

Modules, one concept each:

- :mod:`.clients`: the client registry and each client's policy (types, senders, tenants, domains);
- :mod:`.auth`: API keys and Entra ID access tokens, turned into a registered client;
- :mod:`.ingest`: what the endpoints do, without HTTP (validate, check, publish once, read status);
- :mod:`.idempotency`: one publish per idempotency key, also under concurrent retries;
- :mod:`.ratelimit`: per-client token buckets (429 with ``Retry-After``);
- :mod:`.problems`: RFC 9457 problem details, the shape of every refusal;
- :mod:`.responses`: the response bodies (the OpenAPI schemas);
- :mod:`.templates`: the template seam (the worker's renderer fits it);
- :mod:`.app`: the FastAPI routes; :mod:`.server`: building the app from settings and serving it.

``postbus api`` (:mod:`postbus.api`) wires these to the worker's template renderer.
"""

from __future__ import annotations

from postbus.producers.api.app import create_app
from postbus.producers.api.auth import Authenticator, EntraConfig, TokenVerifier
from postbus.producers.api.clients import Client, ClientRegistry, hash_key, load_registry, new_key
from postbus.producers.api.ingest import MAX_BATCH, Ingest, Limits
from postbus.producers.api.problems import Problem
from postbus.producers.api.server import build_app, serve

__all__ = [
    "MAX_BATCH",
    "Authenticator",
    "Client",
    "ClientRegistry",
    "EntraConfig",
    "Ingest",
    "Limits",
    "Problem",
    "TokenVerifier",
    "build_app",
    "create_app",
    "hash_key",
    "load_registry",
    "new_key",
    "serve",
]
