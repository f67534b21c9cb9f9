"""Master data files into the store through the repository: at server start (`[masterdata] files`).

The CLI (`tallyport-cloud masterdata load`) does the same through the gRPC API instead; both
parse with `cloud.masterdata.files` and store with `apply_loaded`, so a rejection reads the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cloud.errors import ConfigError
from cloud.masterdata.files import Kind, Record, Rejection, apply_loaded, read_files
from cloud.masterdata.models import CustomerTier, Location, RowRejection, Sku
from cloud.masterdata.repository import MasterDataRepository
from cloud.masterdata.settings import MasterDataSection

__all__ = ["load_at_start", "load_files_into"]

log = logging.getLogger(__name__)


async def load_files_into(repository: MasterDataRepository, paths: Sequence[Path]) -> tuple[int, list[Rejection]]:
    """Parse the files and store their good rows; return (rows stored, rejections with file and line)."""
    loaded = read_files(paths)

    async def upsert(kind: Kind, records: Sequence[Record]) -> list[RowRejection]:
        if kind == "sku":
            return await repository.load_skus([record for record in records if isinstance(record, Sku)])
        if kind == "location":
            return await repository.load_locations([record for record in records if isinstance(record, Location)])
        return await repository.load_tiers([record for record in records if isinstance(record, CustomerTier)])

    stored, rejections = await apply_loaded(loaded, upsert)
    return stored, loaded.rejected + rejections


async def load_at_start(repository: MasterDataRepository, section: MasterDataSection) -> None:
    """Load `[masterdata] files`; log each rejected row; raise ConfigError if a file cannot be read."""
    if not section.files:
        return
    paths = [Path(name) for name in section.files]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"[masterdata].files: cannot read {str(path)!r}: no such file")
    stored, rejections = await load_files_into(repository, paths)
    for rejection in rejections:
        log.warning("master data row rejected", extra={"where": str(rejection.origin), "reason": rejection.reason})
    log.info(
        "master data loaded",
        extra={"files": len(paths), "rows_stored": stored, "rows_rejected": len(rejections)},
    )
