"""The inspection API under ``/_emulator/`` (no auth): what was delivered, and the knobs.

``GET /_emulator/messages?recipient=&subject=&since=&event_id=&q=&summary=1`` (``q`` searches event id,
recipients, subject, tenant, sender and operation id; ``summary=1`` leaves out bodies and attachment
content), ``GET /_emulator/messages/{operation_id}``,
``DELETE /_emulator/messages``, ``GET|DELETE /_emulator/stats``, ``GET|PATCH /_emulator/faults``,
``GET|PATCH /_emulator/quota`` (``{"preset": "azure-default"}`` or ``{"sends_per_minute": 30, ...}``),
``GET|PUT /_emulator/failure-rules``. ``since`` is ISO 8601 or epoch seconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from postbus.emulators.acs_email.dataplane import STATE_KEY
from postbus.emulators.acs_email.operations import FailureRule, as_failure_rules
from postbus.emulators.acs_email.quota import QuotaConfig

__all__ = ["add_inspection_routes", "quota_from_json"]


def add_inspection_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_emulator/messages", _list_messages)
    r.add_delete("/_emulator/messages", _clear_messages)
    r.add_get("/_emulator/messages/{operation_id}", _get_message)
    r.add_get("/_emulator/stats", _get_stats)
    r.add_delete("/_emulator/stats", _reset_stats)
    r.add_get("/_emulator/faults", _get_faults)
    r.add_patch("/_emulator/faults", _patch_faults)
    r.add_get("/_emulator/quota", _get_quota)
    r.add_patch("/_emulator/quota", _patch_quota)
    r.add_get("/_emulator/failure-rules", _get_rules)
    r.add_put("/_emulator/failure-rules", _put_rules)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=400)


def _parse_since(raw: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _list_messages(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    since_raw = request.query.get("since")
    try:
        since = _parse_since(since_raw) if since_raw else None
    except ValueError:
        return _bad(f"invalid 'since' value {since_raw!r}: use ISO 8601 or epoch seconds")
    found = state.mailbox.messages(
        recipient=request.query.get("recipient") or None,
        subject=request.query.get("subject") or None,
        since=since,
        event_id=request.query.get("event_id") or None,
        query=request.query.get("q") or None,
    )
    if request.query.get("summary") in ("1", "true"):
        return web.json_response([m.summary() for m in found])
    return web.json_response([m.to_json() for m in found])


async def _get_message(request: web.Request) -> web.Response:
    mail = request.app[STATE_KEY].mailbox.get(request.match_info["operation_id"])
    if mail is None:
        return web.json_response({"error": {"code": "NotFound", "message": "no such message"}}, status=404)
    return web.json_response(mail.to_json())


async def _clear_messages(request: web.Request) -> web.Response:
    request.app[STATE_KEY].mailbox.clear()
    return web.Response(status=204)


async def _get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    snap = state.stats.snapshot()
    snap["stored"] = len(state.mailbox)
    snap["quota"] = state.quota.config.to_dict()
    return web.json_response(snap)


async def _reset_stats(request: web.Request) -> web.Response:
    request.app[STATE_KEY].stats.reset()
    return web.Response(status=204)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults.to_dict())


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except json.JSONDecodeError as exc:
        raise ValueError("body is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    return doc


async def _patch_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        state.faults.update(await _json_object(request))
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(state.faults.to_dict())


def quota_from_json(doc: dict[str, Any]) -> QuotaConfig:
    """``{"preset": "azure-default"}`` or explicit limits (missing or null = unlimited)."""
    if "preset" in doc:
        return QuotaConfig.parse(str(doc["preset"]))
    keys = ("sends_per_minute", "sends_per_hour", "status_per_minute", "status_per_hour")
    unknown = set(doc) - set(keys) - {"name"}
    if unknown:
        raise ValueError(f"unknown quota settings: {', '.join(sorted(unknown))}")
    values: dict[str, int | None] = {}
    for key in keys:
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError("quota limits must be integers or null")
        values[key] = value
    return QuotaConfig(**values, name=str(doc.get("name", "custom")))


async def _get_quota(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].quota.config.to_dict())


async def _patch_quota(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        state.quota.set_config(quota_from_json(await _json_object(request)))
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(state.quota.config.to_dict())


def _rules_json(rules: tuple[FailureRule, ...]) -> list[dict[str, str]]:
    return [{"pattern": r.pattern, "code": r.code, "message": r.message} for r in rules]


async def _get_rules(request: web.Request) -> web.Response:
    return web.json_response(_rules_json(request.app[STATE_KEY].failure_rules))


async def _put_rules(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        doc = await request.json()
        if not isinstance(doc, list):
            raise ValueError("body must be a JSON list of {pattern, code, message}")
        state.failure_rules = as_failure_rules(
            (str(d["pattern"]), str(d["code"]), str(d["message"])) for d in doc
        )
    except (ValueError, KeyError, TypeError) as exc:
        return _bad(str(exc))
    return web.json_response(_rules_json(state.failure_rules))
