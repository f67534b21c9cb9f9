"""Master data the exception rules and reconciliation need: SKUs, the location hierarchy, customer tiers.

- `models`:     the records (`Sku`, `Location`, `CustomerTier`), their validation, and `MasterData`,
                the immutable snapshot the rules read;
- `files`:      CSV and TOML files into records, every bad row rejected with its file, line and reason;
- `repository`: `MasterDataRepository`, the records in the store and a cached snapshot of them;
- `messages`:   records to and from their `tallyport.v1.masterdata` messages;
- `service`:    `MasterDataService`, the gRPC API (upsert with per-row rejections, list);
- `loading`:    files into the repository at server start;
- `cli`:        `tallyport-cloud masterdata load|list`, through the gRPC API;
- `settings`:   the `[masterdata]` section of cloud.toml (files loaded at server start).

`CloudServer.masterdata` is the one repository of a running server: the exception rules and
reconciliation read its `snapshot()`.

This package's `__init__` imports nothing: `cloud.config` imports `settings` from here, and the
store and server import `cloud.config`.
"""
