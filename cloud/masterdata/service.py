"""`MasterDataService`: upsert master data row by row (bad rows answered, good rows stored) and list it.

Status codes: INVALID_ARGUMENT for more than `UPSERT_ROWS_MAX` rows in one request or a list
limit above `LIST_LIMIT_MAX`; UNAVAILABLE when the store fails. A bad row is not an error status:
it is answered in `UpsertResponse.rejections` with its index and reason, and the rest is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc import aio
from tallyport.v1 import masterdata_pb2, masterdata_pb2_grpc

from cloud.errors import StoreError
from cloud.masterdata.messages import (
    location_from_message,
    location_message,
    sku_from_message,
    sku_message,
    tier_from_message,
    tier_message,
)
from cloud.masterdata.models import CustomerTier, Location, MasterDataError, RowRejection, Sku
from cloud.masterdata.repository import MasterDataRepository

__all__ = ["LIST_LIMIT_DEFAULT", "LIST_LIMIT_MAX", "UPSERT_ROWS_MAX", "MasterDataService"]

log = logging.getLogger(__name__)

UPSERT_ROWS_MAX = 10_000
LIST_LIMIT_DEFAULT = 1000
LIST_LIMIT_MAX = 10_000

Context = aio.ServicerContext[Any, Any]
Answer = TypeVar("Answer")
Incoming = TypeVar("Incoming", bound=Message)
Record = TypeVar("Record", Sku, Location, CustomerTier)


class MasterDataService(masterdata_pb2_grpc.MasterDataServiceServicer):
    """SKUs, locations and customer tiers over gRPC, stored through a `MasterDataRepository`."""

    def __init__(self, repository: MasterDataRepository) -> None:
        self._repository = repository

    async def UpsertSkus(
        self, request: masterdata_pb2.UpsertSkusRequest, context: Context
    ) -> masterdata_pb2.UpsertResponse:
        """Insert or replace SKUs by GTIN; bad rows are answered, not stored."""
        return await self._upsert(context, "skus", request.skus, sku_from_message, self._repository.load_skus)

    async def UpsertLocations(
        self, request: masterdata_pb2.UpsertLocationsRequest, context: Context
    ) -> masterdata_pb2.UpsertResponse:
        """Insert or replace locations by id; rows that break the hierarchy are answered, not stored."""
        return await self._upsert(
            context, "locations", request.locations, location_from_message, self._repository.load_locations
        )

    async def UpsertCustomerTiers(
        self, request: masterdata_pb2.UpsertCustomerTiersRequest, context: Context
    ) -> masterdata_pb2.UpsertResponse:
        """Insert or replace customer tiers by name; bad rows are answered, not stored."""
        return await self._upsert(
            context, "customer tiers", request.tiers, tier_from_message, self._repository.load_tiers
        )

    async def ListSkus(
        self, request: masterdata_pb2.ListSkusRequest, context: Context
    ) -> masterdata_pb2.ListSkusResponse:
        """SKUs by GTIN."""
        limit = await _limit(request.limit, context)
        rows = await _answer(context, self._repository.list_skus(limit + 1))
        return masterdata_pb2.ListSkusResponse(
            skus=[sku_message(sku) for sku in rows[:limit]], truncated=len(rows) > limit
        )

    async def ListLocations(
        self, request: masterdata_pb2.ListLocationsRequest, context: Context
    ) -> masterdata_pb2.ListLocationsResponse:
        """Locations by id."""
        limit = await _limit(request.limit, context)
        rows = await _answer(context, self._repository.list_locations(limit + 1))
        return masterdata_pb2.ListLocationsResponse(
            locations=[location_message(location) for location in rows[:limit]], truncated=len(rows) > limit
        )

    async def ListCustomerTiers(
        self, request: masterdata_pb2.ListCustomerTiersRequest, context: Context
    ) -> masterdata_pb2.ListCustomerTiersResponse:
        """Customer tiers by name."""
        limit = await _limit(request.limit, context)
        rows = await _answer(context, self._repository.list_tiers(limit + 1))
        return masterdata_pb2.ListCustomerTiersResponse(
            tiers=[tier_message(tier) for tier in rows[:limit]], truncated=len(rows) > limit
        )

    async def _upsert(
        self,
        context: Context,
        what: str,
        messages: Sequence[Incoming],
        convert: Callable[[Incoming], Record],
        load: Callable[[Sequence[Record]], Awaitable[list[RowRejection]]],
    ) -> masterdata_pb2.UpsertResponse:
        if len(messages) > UPSERT_ROWS_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(messages)} {what} in one request; send at most {UPSERT_ROWS_MAX} per request",
            )
        rejections: list[RowRejection] = []
        records: list[Record] = []
        positions: list[int] = []  # the request index of each record
        for index, message in enumerate(messages):
            try:
                records.append(convert(message))
            except MasterDataError as exc:
                rejections.append(RowRejection(index, str(exc)))
                continue
            positions.append(index)
        refused = await _answer(context, load(records))
        rejections += [RowRejection(positions[row.index], row.reason) for row in refused]
        rejections.sort(key=lambda row: row.index)
        accepted = len(messages) - len(rejections)
        log.info(f"master data {what} upserted", extra={"accepted": accepted, "rejected": len(rejections)})
        return masterdata_pb2.UpsertResponse(
            accepted=accepted,
            rejections=[masterdata_pb2.RowRejection(index=row.index, reason=row.reason) for row in rejections],
        )


async def _limit(requested: int, context: Context) -> int:
    if requested > LIST_LIMIT_MAX:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit {requested} is above {LIST_LIMIT_MAX}")
    return requested or LIST_LIMIT_DEFAULT


async def _answer(context: Context, pending: Awaitable[Answer]) -> Answer:
    """Await a store call; a StoreError becomes UNAVAILABLE (clients retry)."""
    try:
        return await pending
    except StoreError as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
