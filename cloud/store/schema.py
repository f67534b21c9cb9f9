"""The SQLite schema as an ordered list of migrations, applied by `PRAGMA user_version`.

Migration N (1-based) takes the database from user_version N-1 to N, inside one transaction
that also sets the new user_version, so a crash mid-migration leaves the previous version.
Never edit a shipped migration: append a new one.

Tables (times are integer microseconds since the epoch, UTC; enums are protobuf numbers):
- gateway_streams: delivery state per (gateway_id, outbox_id): committed_through_seq, contacts, counters
- gaps:            seq ranges that will never arrive, with the reason
- events:          every valid event once (event_id is the key), filter columns + payload
- event_objects:   (event_id, object_id, gtin) for the object and GTIN filters of ListEvents
- quarantine:      rejected events with the reason; one row per (gateway_id, outbox_id, seq)
- positions:       the newest known position of each serialised object
- on_hand:         serialized_count and class_quantity per (gtin, biz_location)
- on_hand_measures: measured quantities (uom such as KGM) per (gtin, biz_location, uom), kept out of counts
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1 = """
CREATE TABLE gateway_streams (
    gateway_id            TEXT    NOT NULL,
    outbox_id             TEXT    NOT NULL,
    committed_through_seq INTEGER NOT NULL CHECK (committed_through_seq >= 0),
    agent_version         TEXT    NOT NULL,
    first_contact_us      INTEGER NOT NULL,
    last_contact_us       INTEGER NOT NULL,
    events_stored         INTEGER NOT NULL DEFAULT 0,
    duplicates            INTEGER NOT NULL DEFAULT 0,
    rejects               INTEGER NOT NULL DEFAULT 0,
    batches               INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway_id, outbox_id)
) WITHOUT ROWID;

CREATE TABLE gaps (
    gap_id         INTEGER PRIMARY KEY,
    gateway_id     TEXT    NOT NULL,
    outbox_id      TEXT    NOT NULL,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL CHECK (last_seq >= first_seq),
    reason         TEXT    NOT NULL,
    recorded_at_us INTEGER NOT NULL
);
CREATE INDEX gaps_by_stream ON gaps (gateway_id, outbox_id, gap_id);

CREATE TABLE events (
    event_id       TEXT    NOT NULL PRIMARY KEY,
    gateway_id     TEXT    NOT NULL,
    outbox_id      TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_time_us  INTEGER NOT NULL,
    biz_location   TEXT    NOT NULL,
    biz_step       INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    payload        BLOB    NOT NULL
);
CREATE INDEX events_by_time ON events (event_time_us, event_id);
CREATE INDEX events_by_gateway ON events (gateway_id, event_time_us, event_id);
CREATE INDEX events_by_location ON events (biz_location, event_time_us, event_id);

CREATE TABLE event_objects (
    event_id  TEXT NOT NULL REFERENCES events (event_id),
    object_id TEXT NOT NULL,
    gtin      TEXT NOT NULL,
    PRIMARY KEY (event_id, object_id, gtin)
) WITHOUT ROWID;
CREATE INDEX event_objects_by_object ON event_objects (object_id);
CREATE INDEX event_objects_by_gtin ON event_objects (gtin);

CREATE TABLE quarantine (
    quarantine_id  INTEGER PRIMARY KEY,
    gateway_id     TEXT    NOT NULL,
    outbox_id      TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    received_at_us INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    UNIQUE (gateway_id, outbox_id, seq)
);

CREATE TABLE positions (
    object_id     TEXT    NOT NULL PRIMARY KEY,
    epc_uri       TEXT    NOT NULL,
    epc_hex       TEXT    NOT NULL,
    gtin          TEXT    NOT NULL,
    sscc          TEXT    NOT NULL,
    biz_location  TEXT    NOT NULL,
    read_point_id TEXT    NOT NULL,
    biz_step      INTEGER NOT NULL,
    disposition   INTEGER NOT NULL,
    in_transit    INTEGER NOT NULL CHECK (in_transit IN (0, 1)),
    present       INTEGER NOT NULL CHECK (present IN (0, 1)),
    event_time_us INTEGER NOT NULL,
    event_id      TEXT    NOT NULL,
    gateway_id    TEXT    NOT NULL,
    seq           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX positions_by_epc_uri ON positions (epc_uri);
CREATE INDEX positions_by_epc_hex ON positions (epc_hex);

CREATE TABLE on_hand (
    gtin             TEXT    NOT NULL,
    biz_location     TEXT    NOT NULL,
    serialized_count INTEGER NOT NULL DEFAULT 0,
    class_quantity   REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (gtin, biz_location)
) WITHOUT ROWID;

CREATE TABLE on_hand_measures (
    gtin         TEXT NOT NULL,
    biz_location TEXT NOT NULL,
    uom          TEXT NOT NULL,
    quantity     REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (gtin, biz_location, uom)
) WITHOUT ROWID;
"""

# Index i holds the script that takes user_version i to i + 1.
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)
