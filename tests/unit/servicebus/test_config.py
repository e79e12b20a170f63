"""Config.json loading: the official format, defaults, and errors that name the key."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from postbus.emulators.servicebus import EmulatorConfig, load_config
from postbus.errors import SettingsError


def test_packaged_default_has_the_notifications_queue() -> None:
    config = load_config()
    props = config.queues["notifications"]
    assert props.MaxDeliveryCount == 10
    assert props.LockDuration == timedelta(minutes=1)
    assert props.RequiresDuplicateDetection
    assert props.DuplicateDetectionHistoryTimeWindow == timedelta(minutes=10)
    assert props.DefaultMessageTimeToLive == timedelta(days=1)
    settings = props.to_settings()
    assert settings.lock_duration == 60.0
    assert settings.max_size_bytes == 1024 * 1024 * 1024


def test_load_from_file_and_defaults_for_missing_properties(tmp_path: Path) -> None:
    path = tmp_path / "Config.json"
    path.write_text(
        json.dumps(
            {
                "UserConfig": {
                    "Namespaces": [
                        {
                            "Name": "ns",
                            "Queues": [{"Name": "a"}, {"Name": "b", "Properties": {"LockDuration": "PT5S"}}],
                        }
                    ]
                }
            }
        )
    )
    config = load_config(path)
    assert set(config.queues) == {"a", "b"}
    assert config.queues["a"].MaxDeliveryCount == 10
    assert config.queues["b"].LockDuration == timedelta(seconds=5)


@pytest.mark.parametrize(
    ("props", "where"),
    [
        ({"LockDuration": "soon"}, "UserConfig.Namespaces[0].Queues[1].Properties.LockDuration"),
        ({"MaxDeliveryCount": 0}, "UserConfig.Namespaces[0].Queues[1].Properties.MaxDeliveryCount"),
        ({"LockDuartion": "PT1M"}, "UserConfig.Namespaces[0].Queues[1].Properties.LockDuartion"),
        ({"RequiresSession": True}, "UserConfig.Namespaces[0].Queues[1].Properties.RequiresSession"),
        ({"DefaultMessageTimeToLive": "PT0S"}, "Properties.DefaultMessageTimeToLive"),
    ],
)
def test_invalid_properties_name_the_offending_key(props: dict[str, object], where: str) -> None:
    with pytest.raises(SettingsError, match=where.replace("[", r"\[").replace("]", r"\]")):
        EmulatorConfig.from_queues({"ok": {}, "bad": props})


def test_duplicate_queue_names_are_rejected() -> None:
    with pytest.raises(SettingsError, match="duplicate queue name"):
        EmulatorConfig.from_queues({"a": {}, "A": {}})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(SettingsError, match="invalid JSON"):
        load_config(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(SettingsError, match="UserConfig"):
        load_config(empty)
