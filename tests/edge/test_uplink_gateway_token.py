"""The edge's side of gateway authentication and clock measurement.

`[uplink] token` / `token_file` are read and checked when the config loads (errors name the file
and the key, and never echo the token); the uplink sends the token as `authorization: Bearer`
metadata on every stream, and a real cloud with gateway tokens accepts it and refuses a wrong one;
each batch carries the gateway's clock, framed exactly as protobuf would frame it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tallyport.v1 import events_pb2, ingest_pb2

from cloud.config import CloudConfig, token_digest
from cloud.server import CloudServer
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.config import parse_config
from edge.errors import ConfigError
from edge.outbox import open_outbox
from edge.uplink import Uplink, UplinkSettings
from edge.uplink.wire import encode_batch_message

GATEWAY = "gw-token"
TOKEN = "Zm9vYmFyLXRva2VuLTEyMzQ"
BASE = f'[gateway]\nid = "{GATEWAY}"\n[uplink]\n'


def test_an_inline_token_or_a_token_file_is_read_when_the_config_loads(tmp_path: Path) -> None:
    token_file = tmp_path / "uplink.token"
    token_file.write_text(f"{TOKEN}\n")
    assert parse_config(BASE + f'token = "{TOKEN}"').uplink.bearer_token == TOKEN
    assert parse_config(BASE + f'token_file = "{token_file}"').uplink.bearer_token == TOKEN
    assert parse_config(BASE).uplink.bearer_token == ""  # no token: the open behaviour


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('token = "two words"', "site.toml: uplink: token: expected 1 to 1000 printable ASCII characters"),
        ('token = "tab\\there"', "site.toml: uplink: token: expected 1 to 1000 printable ASCII characters"),
        ('token_file = "/nonexistent/uplink.token"', "token_file '/nonexistent/uplink.token': cannot read the token"),
        (f'token = "{TOKEN}"\ntoken_file = "/etc/hostname"', "site.toml: uplink: set either token or token_file"),
        ("token = 5", "site.toml: uplink.token: Input should be a valid string"),
    ],
)
def test_a_bad_token_setting_names_the_file_and_key_and_never_echoes_the_token(lines: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(BASE + lines, "site.toml")
    assert expected in str(raised.value)
    assert "two words" not in str(raised.value)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "uplink.token").write_text("\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(BASE + f'token_file = "{tmp_path / "uplink.token"}"', "site.toml")
    assert "the file is empty; expected the gateway's token on one line" in str(raised.value)


@given(
    batch_id=st.integers(min_value=0, max_value=2**64 - 1),
    gateway_time_ms=st.integers(min_value=0, max_value=253_402_300_799_999),
    count=st.integers(min_value=0, max_value=5),
)
def test_a_batch_with_the_gateway_clock_is_framed_as_protobuf_frames_it(
    batch_id: int, gateway_time_ms: int, count: int
) -> None:
    events = [events_pb2.Event(seq=n + 1, biz_location=f"loc-{n}") for n in range(count)]
    wire = encode_batch_message(batch_id, [event.SerializeToString() for event in events], gateway_time_ms)
    expected = ingest_pb2.EventBatch(batch_id=batch_id, events=events)
    expected.gateway_time.FromMilliseconds(gateway_time_ms)
    assert wire == ingest_pb2.GatewayMessage(batch=expected).SerializeToString()


def _event(n: int) -> events_pb2.Event:
    event = events_pb2.Event(
        gateway_id=GATEWAY,
        type=events_pb2.EVENT_TYPE_OBJECT,
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        biz_location="urn:tallyport:loc:t:dock-1",
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:t:dock-1", device_id="scanner0"),
    )
    event.event_time.GetCurrentTime()
    event.objects.append(events_pb2.IdentifiedObject(id=f"https://id.gs1.org/01/09501101530003/21/T{n}"))
    return event


def _cloud_config(tmp_path: Path) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 200},
            "store": {"path": str(tmp_path / "cloud.db")},
            "ingest": {"gateway_tokens": {GATEWAY: token_digest(TOKEN)}},
        }
    )


async def _run_until(uplink: Uplink, done: asyncio.Event | None, seq: int) -> None:
    task = asyncio.create_task(uplink.run())
    try:
        async with asyncio.timeout(20):
            while uplink.acked_through_seq < seq and (done is None or not done.is_set()):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_uplink_sends_its_token_and_a_cloud_with_tokens_takes_its_events(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_cloud_config(tmp_path)) as cloud,
    ):
        await outbox.append_many([_event(n) for n in range(120)])
        settings = UplinkSettings(target=cloud.target, gateway_id=GATEWAY, agent_version="test", token=TOKEN)
        uplink = Uplink(outbox, settings, Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)))
        await _run_until(uplink, None, 120)
        assert uplink.acked_through_seq == 120
        assert (await outbox.stats()).events == 0


@pytest.mark.parametrize("token", ["", "not-the-token"], ids=["no-token", "wrong-token"])
async def test_a_refused_uplink_keeps_every_event_and_says_why(
    tmp_path: Path, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.uplink.stream")
    async with (
        open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_cloud_config(tmp_path)) as cloud,
    ):
        await outbox.append_many([_event(n) for n in range(10)])
        settings = UplinkSettings(target=cloud.target, gateway_id=GATEWAY, agent_version="test", token=token)
        uplink = Uplink(outbox, settings, Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)))
        refused = asyncio.Event()

        class _Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "UNAUTHENTICATED" in str(getattr(record, "reason", "")):
                    refused.set()

        watch = _Watch()
        logging.getLogger("edge.uplink.stream").addHandler(watch)
        try:
            await _run_until(uplink, refused, 10**9)
        finally:
            logging.getLogger("edge.uplink.stream").removeHandler(watch)
        assert refused.is_set()
        assert (uplink.connected, uplink.acked_through_seq, uplink.sessions_total) == (False, 0, 0)
        assert (await outbox.stats()).events == 10  # nothing deleted: the events wait for a valid token
