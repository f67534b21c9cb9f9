"""`[masterdata]` in cloud.toml: master data files loaded at server start, and the snapshot's age.

    [masterdata]
    files = []                   # CSV / TOML files (see cloud.masterdata.files), relative to the
                                 # working directory, loaded in order at every start; a bad row is
                                 # logged with its file, line and reason, the rest loads
    snapshot_max_age_ms = 5000   # the rules re-read master data at least this often, so that
                                 # what another aggregator on the same PostgreSQL wrote shows up

A file that cannot be read stops the start (the site would run without its master data).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MasterDataSection"]


class MasterDataSection(BaseModel):
    """`[masterdata]`: files loaded at start, and how stale the rules' snapshot may be."""

    # As cloud.config's sections: TOML has types, so a string is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    files: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        json_schema_extra={"expected": "a list of file paths, e.g. ['deploy/demo/masterdata.toml']"},
    )
    snapshot_max_age_ms: int = Field(default=5000, ge=0, le=3_600_000)
