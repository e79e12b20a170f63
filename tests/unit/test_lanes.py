"""Lanes in the kernel: names, the catalogue's defaults, who may raise a lane, the queue of each lane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from postbus.errors import InvalidEvent, SettingsError
from postbus.events import parse_event
from postbus.lanes import (
    Lane,
    LaneNotAllowed,
    choose_lane,
    default_lane,
    lane_catalog,
    lane_queues,
    parse_lane,
)
from postbus.settings import load_settings


def _event(**overrides: Any) -> Any:
    document = {"id": "e-1", "type": "order.confirmation", "to": ["jane@example.com"], "sender": "orders"}
    document.update(overrides)
    return parse_event(document)


def test_the_shipped_catalogue_puts_reminders_in_critical_and_orders_in_normal() -> None:
    assert default_lane("appointment.reminder") is Lane.CRITICAL
    assert default_lane("order.confirmation") is Lane.NORMAL
    assert default_lane("a.type.nobody.knows") is Lane.NORMAL


def test_a_user_catalogue_adds_and_overrides_default_lanes(tmp_path: Path) -> None:
    (tmp_path / "review.request").mkdir()
    (tmp_path / "review.request" / "lane.txt").write_text("bulk\n")
    (tmp_path / "order.confirmation").mkdir()
    (tmp_path / "order.confirmation" / "lane.txt").write_text("Critical")
    catalog = lane_catalog(tmp_path)
    assert (catalog["review.request"], catalog["order.confirmation"]) == (Lane.BULK, Lane.CRITICAL)


def test_an_unknown_lane_in_the_catalogue_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.type").mkdir()
    (tmp_path / "x.type" / "lane.txt").write_text("urgent")
    with pytest.raises(
        SettingsError, match=r"x\.type/lane\.txt: unknown lane 'urgent' \(known: critical, normal, bulk\)"
    ):
        lane_catalog(tmp_path)


def test_an_event_may_go_lower_but_higher_only_when_allowed() -> None:
    assert choose_lane(_event(), default=Lane.NORMAL, may_raise=False) is Lane.NORMAL
    assert choose_lane(_event(lane="bulk"), default=Lane.NORMAL, may_raise=False) is Lane.BULK
    assert choose_lane(_event(lane="critical"), default=Lane.NORMAL, may_raise=True) is Lane.CRITICAL
    with pytest.raises(LaneNotAllowed, match="POSTBUS_LANE_RAISE_ALLOWED") as refused:
        choose_lane(_event(lane="critical"), default=Lane.NORMAL, may_raise=False)
    assert refused.value.field == "lane"


def test_an_unknown_lane_name_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidEvent, match="lane") as refused:
        _event(lane="urgent")
    assert refused.value.field == "lane"
    with pytest.raises(InvalidEvent, match="unknown lane 'urgent'"):
        parse_lane("urgent")


def test_an_event_without_a_lane_keeps_the_body_it_always_had() -> None:
    assert b'"lane"' not in _event().to_json()
    assert b'"lane":"bulk"' in _event(lane="bulk").to_json()


def test_lane_queues_follow_the_main_queue_unless_named() -> None:
    base = {"senders": {"orders": "orders@shop.example.com"}}
    assert lane_queues(load_settings(None, **base)) == {Lane.NORMAL: "notifications"}
    assert lane_queues(load_settings(None, **base, lanes=True, queue="mail")) == {
        Lane.CRITICAL: "mail-critical",
        Lane.NORMAL: "mail",
        Lane.BULK: "mail-bulk",
    }
    named = load_settings(None, **base, lanes=True, queue_critical="urgent", queue_bulk="later")
    assert lane_queues(named)[Lane.CRITICAL] == "urgent"
    assert lane_queues(named)[Lane.BULK] == "later"


def test_lanes_that_share_a_queue_or_an_entity_path_are_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match="three different queues"):
        load_settings(None, lanes=True, queue_bulk="notifications")
    with pytest.raises(SettingsError, match="EntityPath"):
        load_settings(
            None,
            lanes=True,
            servicebus_connection_string="Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;"
            "SharedAccessKey=v;EntityPath=notifications;UseDevelopmentEmulator=true",
        )
