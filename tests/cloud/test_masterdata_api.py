"""MasterDataService on a real server over each store: upserts with per-row rejections, lists, start-up files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from cloud_testkit import sqlite_section
from grpc import aio
from tallyport.v1 import masterdata_pb2, masterdata_pb2_grpc

from cloud.config import CloudConfig
from cloud.errors import ConfigError
from cloud.masterdata.models import CustomerTier
from cloud.masterdata.service import UPSERT_ROWS_MAX
from cloud.server import SERVICE_NAMES, CloudServer
from cloud.store.sqlite_store import SqliteStore

REPO_ROOT = Path(__file__).resolve().parents[2]
GTIN = "09501101530003"


@pytest.fixture
def masterdata(channel: aio.Channel) -> Any:
    return masterdata_pb2_grpc.MasterDataServiceStub(channel)


def config_with_files(store_section: dict[str, Any], *files: Path) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": store_section,
            "masterdata": {"files": [str(path) for path in files]},
        }
    )


def location(location_id: str, level: int, parent_id: str = "", **fields: Any) -> masterdata_pb2.Location:
    return masterdata_pb2.Location(
        location_id=location_id, name=location_id.rsplit(":", 1)[-1], level=level, parent_id=parent_id, **fields
    )  # type: ignore[arg-type]


async def test_upsert_and_list_with_a_rejected_row(cloud: CloudServer, masterdata: Any) -> None:
    tiers = await masterdata.UpsertCustomerTiers(
        masterdata_pb2.UpsertCustomerTiersRequest(
            tiers=[
                masterdata_pb2.CustomerTier(name="strategic", weight=3.0, description="key accounts"),
                masterdata_pb2.CustomerTier(name="free", weight=0.0),
            ]
        )
    )
    assert tiers.accepted == 1
    assert [(row.index, row.reason) for row in tiers.rejections] == [(1, "weight: expected a number > 0, got 0")]

    locations = await masterdata.UpsertLocations(
        masterdata_pb2.UpsertLocationsRequest(
            locations=[
                location(
                    "urn:loc:dc1:cold", masterdata_pb2.LOCATION_LEVEL_ZONE, "urn:loc:dc1", location_type="cold_storage"
                ),
                location("urn:loc:dc1:ghost", masterdata_pb2.LOCATION_LEVEL_DOOR, "urn:loc:dc1:nowhere"),
                location("urn:loc:dc1", masterdata_pb2.LOCATION_LEVEL_SITE, customer_tier="strategic"),
                location("urn:loc:dc1:x", masterdata_pb2.LOCATION_LEVEL_UNSPECIFIED, "urn:loc:dc1"),
            ]
        )
    )
    assert locations.accepted == 2
    assert [(row.index, row.reason) for row in locations.rejections] == [
        (1, "parent_id 'urn:loc:dc1:nowhere': no such location (load parents first or in the same batch)"),
        (3, "level: required: site, zone, door or read_point"),
    ]

    chilled = masterdata_pb2.Sku(
        gtin=GTIN,
        description="Vaccine",
        unit_cost=184.0,
        condition=masterdata_pb2.ConditionRange(temperature_min_c=2.0, temperature_max_c=8.0),
        abc_class=masterdata_pb2.ABC_CLASS_A,
        lifecycle=masterdata_pb2.LIFECYCLE_PHASE_OUT,
        customer_tier="strategic",
        annual_usage_units=5200.0,
    )
    skus = await masterdata.UpsertSkus(
        masterdata_pb2.UpsertSkusRequest(
            skus=[
                masterdata_pb2.Sku(gtin="09501101530004", description="Bad check digit", unit_cost=1.0),
                chilled,
                masterdata_pb2.Sku(gtin="05901234123457", description="Gel", unit_cost=3.1, customer_tier="gold"),
                masterdata_pb2.Sku(gtin="10614141073464", description="Yoghurt", unit_cost=9.6),
            ]
        )
    )
    assert skus.accepted == 2
    assert [(row.index, row.reason) for row in skus.rejections] == [
        (0, "gtin '09501101530004': check digit should be 3"),
        (2, "customer_tier 'gold' is not a known tier (known: strategic)"),
    ]

    listed = await masterdata.ListSkus(masterdata_pb2.ListSkusRequest())
    assert not listed.truncated
    chilled.currency = "EUR"  # the default, filled in
    assert list(listed.skus) == [
        chilled,
        masterdata_pb2.Sku(
            gtin="10614141073464",
            description="Yoghurt",
            unit_cost=9.6,
            currency="EUR",
            abc_class=masterdata_pb2.ABC_CLASS_C,
            lifecycle=masterdata_pb2.LIFECYCLE_ACTIVE,
        ),
    ]
    assert not listed.skus[1].HasField("condition")
    first = await masterdata.ListLocations(masterdata_pb2.ListLocationsRequest(limit=1))
    assert [row.location_id for row in first.locations] == ["urn:loc:dc1"] and first.truncated
    tier_list = await masterdata.ListCustomerTiers(masterdata_pb2.ListCustomerTiersRequest())
    assert [(tier.name, tier.weight, tier.description) for tier in tier_list.tiers] == [
        ("strategic", 3.0, "key accounts")
    ]

    # The rules read the same repository the service writes through: no waiting for the cache.
    snapshot = await cloud.masterdata.snapshot()
    assert snapshot.sku(GTIN) is not None and snapshot.sku(GTIN).condition is not None  # type: ignore[union-attr]
    assert snapshot.service_weight("10614141073464", "urn:loc:dc1:cold") == 3.0  # the site serves strategic


async def test_too_many_rows_or_too_large_a_limit_is_invalid(cloud: CloudServer, masterdata: Any) -> None:
    tiers = [masterdata_pb2.CustomerTier(name=f"t{index}", weight=1.0) for index in range(UPSERT_ROWS_MAX + 1)]
    with pytest.raises(aio.AioRpcError) as caught:
        await masterdata.UpsertCustomerTiers(masterdata_pb2.UpsertCustomerTiersRequest(tiers=tiers))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send at most 10000 per request" in (caught.value.details() or "")
    with pytest.raises(aio.AioRpcError) as caught:
        await masterdata.ListSkus(masterdata_pb2.ListSkusRequest(limit=10_001))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await cloud.masterdata.snapshot()).tiers == {}


async def test_the_service_is_named_for_health_and_reflection() -> None:
    assert "tallyport.v1.MasterDataService" in SERVICE_NAMES


async def test_the_configured_files_are_loaded_at_start(
    store_section: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("name,weight\nvip,5\nzero,0\n", encoding="utf-8")
    config = config_with_files(store_section, REPO_ROOT / "deploy" / "demo" / "masterdata.toml", extra)
    with caplog.at_level(logging.WARNING, logger="cloud.masterdata"):
        async with CloudServer(config) as server:
            snapshot = await server.masterdata.snapshot()
    assert snapshot.tier_weight("strategic") == 3.0 and snapshot.tiers["vip"] == CustomerTier("vip", 5.0)
    assert snapshot.sku("10614142655096") is not None  # the frozen plasma of the RFID passages
    assert snapshot.location("urn:tallyport:loc:dc1:cold-room") is not None
    rejected = [record for record in caplog.records if record.getMessage() == "master data row rejected"]
    assert [(record.where, record.reason) for record in rejected] == [  # type: ignore[attr-defined]
        (f"{extra}:3", "weight: expected a number > 0, got 0")
    ]


async def test_a_missing_file_refuses_the_start(tmp_path: Path) -> None:
    config = config_with_files(sqlite_section(tmp_path), tmp_path / "nowhere.toml")
    server = CloudServer(config)
    with pytest.raises(ConfigError, match=r"\[masterdata\].files: cannot read '.*nowhere.toml': no such file"):
        await server.start()
    await server.stop()


async def test_a_failing_store_is_unavailable(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    config = config_with_files(sqlite_section(tmp_path))
    async with CloudServer(config, store=store) as server, aio.insecure_channel(server.target) as channel:
        stub = masterdata_pb2_grpc.MasterDataServiceStub(channel)
        await store.close()  # every statement now fails
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ListSkus(masterdata_pb2.ListSkusRequest())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.UpsertCustomerTiers(
                masterdata_pb2.UpsertCustomerTiersRequest(tiers=[masterdata_pb2.CustomerTier(name="a", weight=1.0)])
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
