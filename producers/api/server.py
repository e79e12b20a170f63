"""Build the ingest app from settings, and serve it with uvicorn.

::

    app = build_app(settings, templates=TemplateRenderer(user_dir=settings.templates_dir))
    serve(app, host=settings.api_host, port=settings.api_port)

The app owns one :class:`~postbus.producers.publisher.Publisher` (one AMQP connection, opened
lazily) and one record store for its lifetime; both close when uvicorn shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from postbus.errors import SettingsError
from postbus.producers.api.app import create_app
from postbus.producers.api.auth import Authenticator, EntraConfig, TokenVerifier
from postbus.producers.api.clients import ClientRegistry, load_registry
from postbus.producers.api.ingest import EventPublisher, Ingest, Limits
from postbus.producers.api.templates import TemplateCatalog
from postbus.producers.publisher import Publisher
from postbus.records import RecordStore, record_store
from postbus.settings import Settings, env_name

__all__ = ["authenticator_from_settings", "build_app", "registry_from_settings", "serve"]


def registry_from_settings(settings: Settings) -> ClientRegistry:
    """The client registry ``POSTBUS_API_CLIENTS`` holds or names; one-line error if missing or wrong."""
    if not settings.api_clients:
        raise SettingsError(
            f"{env_name('api_clients')} must hold or name the client registry for the ingest API"
        )
    registry = load_registry(settings.api_clients)
    if registry.uses_entra and not settings.api_entra_tenant_id:
        raise SettingsError(
            f"{env_name('api_clients')} lists entra_app_ids, so {env_name('api_entra_tenant_id')} must be set"
        )
    return registry


def authenticator_from_settings(
    settings: Settings, registry: ClientRegistry, *, refresh_cooldown_seconds: float = 30.0
) -> Authenticator:
    """API keys always; Entra tokens when a tenant is configured."""
    tokens = None
    if settings.api_entra_tenant_id:
        config = EntraConfig(
            tenant_id=settings.api_entra_tenant_id,
            audiences=tuple(settings.api_audiences),
            authority=settings.api_authority,
        )
        tokens = TokenVerifier(config, refresh_cooldown_seconds=refresh_cooldown_seconds)
    return Authenticator(registry, tokens=tokens)


def build_app(
    settings: Settings,
    *,
    templates: TemplateCatalog | None,
    registry: ClientRegistry | None = None,
    publisher: EventPublisher | None = None,
    records: RecordStore | None = None,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """The ingest app for ``settings``; the seams default to the real publisher and record store."""
    registry = registry or registry_from_settings(settings)
    own_publisher: Publisher | None = None
    sender: EventPublisher
    if publisher is None:
        settings.require_servicebus("the ingest API")
        sender = own_publisher = Publisher.from_settings(settings)
    else:
        sender = publisher
    store = records if records is not None else record_store(settings)
    ingest = Ingest(
        publisher=sender,
        records=store,
        templates=templates,
        limits=Limits(
            max_body_bytes=settings.api_max_body_bytes,
            max_event_bytes=settings.api_max_event_bytes,
            render_check=settings.api_render_check,
        ),
    )
    started = False

    async def ready() -> str | None:
        return None if started else "starting"

    app = create_app(ingest, authenticator or authenticator_from_settings(settings, registry), ready=ready)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal started
        if own_publisher is not None:
            await own_publisher.open()
        started = True
        try:
            yield
        finally:
            started = False
            if own_publisher is not None:
                await own_publisher.close()
            if records is None:
                await store.close()

    app.router.lifespan_context = lifespan
    return app


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until SIGTERM/SIGINT (uvicorn's own graceful shutdown)."""
    import uvicorn

    # Our request line replaces uvicorn's access log; its own records go through our logging.
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=True)
