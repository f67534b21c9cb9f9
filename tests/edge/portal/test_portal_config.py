"""The `[[portal]]` table: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from edge.pipeline.portal_config import PortalConfig, portal_references_problems

MINIMAL = """
[[portal]]
name = "dock-4"
readers = ["dock4-reader"]
outside_antennas = [1, 2]
inside_antennas = [3, 4]
inbound_read_point = "dock4-in"
outbound_read_point = "dock4-out"
biz_location = "urn:epc:id:sgln:0614141.00004.0"
"""


def parse(extra: str = "") -> PortalConfig:
    return PortalConfig.model_validate(tomllib.loads(MINIMAL + extra)["portal"][0])


def test_defaults() -> None:
    config = parse()
    assert (config.session_idle_ms, config.session_max_ms, config.session_epcs_max) == (2000, 30_000, 10_000)
    assert (config.reads_min, config.peak_rssi_dbm_min, config.direction_gap_ms_min) == (2, -75.0, 150)
    assert (config.gpi_grace_ms, config.photo_eye_blocked_state, config.neighbours) == (500, "high", [])
    assert not config.gpi_bounded


def test_both_photo_eyes_make_the_sessions_gpi_bounded() -> None:
    assert parse("photo_eye_outside_pin = 1\nphoto_eye_inside_pin = 2\n").gpi_bounded


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("photo_eye_outside_pin = 1\n", "set both photo_eye_outside_pin and photo_eye_inside_pin, or neither"),
        ("photo_eye_outside_pin = 1\nphoto_eye_inside_pin = 1\n", "must differ"),
        ('neighbours = ["dock-4"]\n', "a portal cannot be its own neighbour"),
        ("session_idle_ms = 5000\nsession_max_ms = 4000\n", "session_max_ms must be >= session_idle_ms"),
        ("session_windo_ms = 5\n", "Extra inputs are not permitted"),
        ("reads_min = 0\n", "greater than or equal to 1"),
    ],
)
def test_refused(extra: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(extra)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"outside_antennas": [1, 2], "inside_antennas": [2, 3]}, r"antenna ports \[2\] are in both"),
        ({"outside_antennas": [0]}, "antenna ports are 1-based"),
        ({"readers": ["r", "r"]}, "readers are listed twice"),
        ({"readers": []}, "at least 1 item"),
    ],
)
def test_refused_antenna_layouts(overrides: dict[str, Any], message: str) -> None:
    data = tomllib.loads(MINIMAL)["portal"][0] | overrides
    with pytest.raises(ValidationError, match=message):
        PortalConfig.model_validate(data)


def test_frozen() -> None:
    config = parse()
    with pytest.raises(ValidationError):
        config.reads_min = 5  # type: ignore[misc]  # the point of the test


def test_cross_table_problems_are_listed_together() -> None:
    first = parse('neighbours = ["dock-5", "dock-9"]\nphoto_eye_outside_pin = 1\nphoto_eye_inside_pin = 2\n')
    second = first.model_copy(
        update={
            "name": "dock-5",
            "neighbours": [],
            "outside_antennas": [4],
            "inside_antennas": [5],
            "photo_eye_inside_pin": 3,
        }
    )
    problems = portal_references_problems([first, second, first], ["dock4-in"])
    assert problems == [
        "portal names must be unique, repeated: dock-4",
        "portal[0] (dock-4).outbound_read_point: expected one of the [[read_point]] names, got 'dock4-out'",
        "portal[0] (dock-4).neighbours: no portal named 'dock-9'",
        "portal[1] (dock-5).outbound_read_point: expected one of the [[read_point]] names, got 'dock4-out'",
        "portal[1] (dock-5): reader 'dock4-reader' antenna 4 already belongs to portal 'dock-4'",
        "portal[1] (dock-5): reader 'dock4-reader' GPI pin 1 already belongs to portal 'dock-4'",
        "portal[2] (dock-4).outbound_read_point: expected one of the [[read_point]] names, got 'dock4-out'",
        "portal[2] (dock-4).neighbours: no portal named 'dock-9'",
    ]


def test_the_docstring_example_is_a_valid_portal() -> None:
    import edge.pipeline.portal_config as module

    assert module.__doc__ is not None
    example = module.__doc__.split("```toml")[1].split("```")[0]
    config = PortalConfig.model_validate(tomllib.loads(example)["portal"][0])
    assert config.gpi_bounded and config.neighbours == ["dock-5"]
