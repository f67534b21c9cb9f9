"""Gateway authentication on the uplink: per-gateway bearer tokens, checked against their SHA-256.

A rogue client that claims another gateway's id must neither be let in nor supersede the real
gateway's stream; without tokens configured the cloud behaves as before. Real server on port 0,
real SQLite; the config cases check that errors name the file, the key and what was expected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from cloud.config import CloudConfig, load_config, token_digest
from cloud.errors import ConfigError
from cloud.server import CloudServer
from tests.cloud.cloud_testkit import make_event, sqlite_section
from tests.cloud.gateway_clients import (
    LegitGateway,
    batch_bytes,
    expect_status,
    gateway_states,
    hello_bytes,
    raw_stream,
    read_message,
)

TOKENS = {"gw-legit": "legit-token-9f3c", "gw-other": "other-token-77ab"}
ROGUE = "gw-rogue"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudServer]:
    tokens_file = tmp_path / "gateway-tokens.toml"
    tokens_file.write_text("".join(f'{gateway} = "{token_digest(token)}"\n' for gateway, token in TOKENS.items()))
    config = CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": sqlite_section(tmp_path),
            "ingest": {"gateway_tokens_file": str(tokens_file), "max_streams": 4},
        }
    )
    async with CloudServer(config) as server:
        yield server


@pytest.fixture
async def channel(cloud: CloudServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(cloud.target) as opened:
        yield opened


# ---- refusals ------------------------------------------------------------------------------------

REFUSED = {
    "no-token": (None, grpc.StatusCode.UNAUTHENTICATED, "this cloud requires a gateway token"),
    "unknown-token": (bearer("guessed"), grpc.StatusCode.UNAUTHENTICATED, "the gateway token is not known"),
    "not-bearer": (
        [("authorization", f"Basic {TOKENS['gw-legit']}")],
        grpc.StatusCode.UNAUTHENTICATED,
        "exactly one 'Bearer <token>' value",
    ),
    "two-headers": (
        bearer(TOKENS["gw-legit"]) + bearer(TOKENS["gw-legit"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "exactly one 'Bearer <token>' value",
    ),
    "another-gateways-token": (
        bearer(TOKENS["gw-other"]),
        grpc.StatusCode.PERMISSION_DENIED,
        "the token presented belongs to gateway 'gw-other'; it may not speak for 'gw-legit'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_stream_claiming_a_gateway_without_its_token_is_refused_and_supersedes_nothing(
    cloud: CloudServer, channel: aio.Channel, case: str
) -> None:
    metadata, code, expected = REFUSED[case]
    async with LegitGateway(cloud.target, "gw-legit", metadata=bearer(TOKENS["gw-legit"])) as legit:
        rogue = raw_stream(channel, metadata)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            # The cloud reads this Hello before it refuses; a stream refused on its metadata alone is
            # not written to (gRPC would report a write racing that refusal as INTERNAL, not the status).
            await rogue.write(hello_bytes("gw-legit", outbox_id="outbox-rogue"))
        assert expected in await expect_status(rogue, code)
    await legit.verify(channel)  # its stream ran to the end: not superseded, nothing lost or doubled
    assert ("gw-legit", "outbox-rogue") not in await gateway_states(channel)


async def test_an_unauthenticated_flood_never_takes_a_stream_slot(cloud: CloudServer, channel: aio.Channel) -> None:
    """Refused before anything is read: 500 token-less streams, which the client keeps open and never
    feeds, are all answered at once, and max_streams = 4 still admits the real gateways."""
    async with LegitGateway(cloud.target, "gw-legit", metadata=bearer(TOKENS["gw-legit"])) as legit:
        flood = [raw_stream(channel, bearer(f"guess-{n}") if n % 2 else None) for n in range(500)]
        await asyncio.gather(*(expect_status(call, grpc.StatusCode.UNAUTHENTICATED) for call in flood))
        async with LegitGateway(cloud.target, "gw-other", metadata=bearer(TOKENS["gw-other"])) as other:
            pass
    await legit.verify(channel)
    await other.verify(channel)


async def test_a_gateway_reconnecting_with_its_own_token_supersedes_its_old_stream(channel: aio.Channel) -> None:
    old = raw_stream(channel, bearer(TOKENS["gw-legit"]))
    await old.write(hello_bytes("gw-legit"))
    assert (await read_message(old)).WhichOneof("body") == "welcome"
    new = raw_stream(channel, bearer(TOKENS["gw-legit"]))
    await new.write(hello_bytes("gw-legit"))
    assert (await read_message(new)).WhichOneof("body") == "welcome"
    assert await expect_status(old, grpc.StatusCode.ABORTED) == "superseded by a newer stream"
    await new.write(batch_bytes(1, [make_event(1, gateway_id="gw-legit")]))
    assert (await read_message(new)).ack.accepted == 1
    new.cancel()


async def test_a_token_sent_to_a_cloud_without_tokens_is_ignored(tmp_path: Path) -> None:
    """No tokens configured = the open behaviour of before, whatever the gateway sends."""
    config = CloudConfig.model_validate({"server": {"listen": "127.0.0.1:0"}, "store": sqlite_section(tmp_path)})
    async with CloudServer(config) as server, aio.insecure_channel(server.target) as channel:
        async with LegitGateway(server.target, metadata=bearer("anything")) as with_token:
            pass
        async with LegitGateway(server.target, "gw-plain") as without:
            pass
        await with_token.verify(channel)
        await without.verify(channel)


# ---- configuration ---------------------------------------------------------------------------------


def _cloud_toml(tmp_path: Path, ingest: str) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f"[ingest]\n{ingest}\n")
    return path


def test_inline_tokens_and_a_tokens_file_give_the_same_digests(tmp_path: Path) -> None:
    digest = token_digest("s3cret")
    (tmp_path / "tokens.toml").write_text(f'"gw-1" = "{digest.upper()}"\n')
    from_file = load_config(_cloud_toml(tmp_path, f'gateway_tokens_file = "{tmp_path / "tokens.toml"}"'))
    inline = load_config(_cloud_toml(tmp_path, f'gateway_tokens = {{ "gw-1" = "{digest}" }}'))
    assert from_file.ingest.gateway_tokens == inline.ingest.gateway_tokens == {"gw-1": digest}
    assert CloudConfig().ingest.gateway_tokens == {}  # off by default


def _error(tmp_path: Path, ingest: str, tokens: str | None = None) -> str:
    if tokens is not None:
        (tmp_path / "tokens.toml").write_text(tokens)
    with pytest.raises(ConfigError) as raised:
        load_config(_cloud_toml(tmp_path, ingest))
    return str(raised.value)


TOKENS_FILE_KEY = "cloud.toml: [ingest].gateway_tokens_file: "


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ('"gw-1" = "abc"\n', "tokens.toml: gw-1: expected the SHA-256 of the gateway's token as 64 hex digits"),
        ('"gw 1" = "' + "a" * 64 + '"\n', "tokens.toml: key 'gw 1': expected a gateway_id matching"),
        ('"gw-1" = 5\n', "tokens.toml: gw-1: expected the SHA-256 of the gateway's token as 64 hex digits"),
        ('"gw-1" = "' + "a" * 64 + '"\n"gw-2" = "' + "A" * 64 + '"\n', "gw-1 and gw-2 have the same token"),
        ("", "tokens.toml: no gateways; expected lines of"),
        ("gw-1 = ", "tokens.toml: not valid TOML"),
    ],
)
def test_a_bad_tokens_file_names_the_file_and_the_key(tmp_path: Path, tokens: str, expected: str) -> None:
    message = _error(tmp_path, f'gateway_tokens_file = "{tmp_path / "tokens.toml"}"', tokens)
    assert message.startswith(f"{tmp_path / 'cloud.toml'}: [ingest].gateway_tokens_file: ")
    assert expected in message


def test_a_missing_tokens_file_and_conflicting_settings_are_config_errors(tmp_path: Path) -> None:
    missing = _error(tmp_path, 'gateway_tokens_file = "/nonexistent/tokens.toml"')
    assert "[ingest].gateway_tokens_file: cannot read the tokens file '/nonexistent/tokens.toml'" in missing
    both = _error(
        tmp_path,
        f'gateway_tokens_file = "{tmp_path / "tokens.toml"}"\ngateway_tokens = {{ "gw-1" = "{"b" * 64}" }}',
        f'"gw-1" = "{"a" * 64}"\n',
    )
    assert "[ingest].gateway_tokens: set either gateway_tokens or gateway_tokens_file, not both" in both
    inline = _error(tmp_path, 'gateway_tokens = { "gw-1" = "plain-token" }')
    assert "[ingest].gateway_tokens: [ingest.gateway_tokens]: gw-1: expected the SHA-256" in inline
    assert "plain-token" not in inline  # a token put where its digest belongs is not echoed into logs
