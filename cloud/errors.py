"""The aggregator's error tree; library errors are translated into it at one boundary each.

    CloudError
    ├── ConfigError           cloud.toml or a flag is invalid (refuse to start; names file, key, expectation)
    ├── ListenError           the gRPC server cannot bind its address (refuse to start)
    ├── StoreError            the store failed: disk full, I/O error, lock timeout, corruption
    │   └── SchemaVersionError   the database was written by a newer Tallyport (refuse to start)
    ├── ValidationError       a request breaks the contract (answered INVALID_ARGUMENT)
    │   └── ProtocolError     a gateway broke the uplink protocol (its stream is aborted)
    └── ServerUnreachableError  the CLI cannot reach a running server (exit code 2)

Boundaries: `sqlite3`/`aiosqlite` errors become `StoreError` in `cloud.store.sqlite_store`;
`grpc` errors become `ServerUnreachableError` in `cloud.cli`; `pydantic`/`tomllib` errors
become `ConfigError` in `cloud.config`. Services turn our errors into gRPC status codes.
"""

from __future__ import annotations


class CloudError(Exception):
    """Base of every error the aggregator raises on purpose."""


class ConfigError(CloudError):
    """A config file or flag is invalid; the message names the file, the key and what was expected."""


class ListenError(CloudError):
    """The server could not bind its listen address."""


class StoreError(CloudError):
    """The store could not read or write; a stream that meets it is aborted with UNAVAILABLE."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this program knows."""


class ValidationError(CloudError):
    """A request does not satisfy the contract."""


class ProtocolError(ValidationError):
    """A gateway sent something the uplink protocol does not allow."""


class ServerUnreachableError(CloudError):
    """The CLI could not reach the server (gRPC UNAVAILABLE or deadline exceeded)."""
