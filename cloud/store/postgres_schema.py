"""The PostgreSQL schema as an ordered list of migrations, recorded in `schema_migrations`.

Migration N (1-based) takes the schema from version N-1 to N. `PostgresStore.open` applies
the missing ones while holding a session advisory lock keyed by the schema name, so several
aggregators starting at once migrate it exactly once; each migration runs in one transaction
together with its `schema_migrations` row (PostgreSQL DDL is transactional), so a crash
mid-migration leaves the previous version. Never edit a shipped migration: append a new one.

The tables mirror the SQLite store's (`cloud.store.schema`), one for one, with these choices:
- every text column is `COLLATE "C"`: byte order, like SQLite's BINARY, so ORDER BY and the
  keyset cursors of ListEvents compare the same way whatever the database's locale is;
- integer microseconds are `bigint`, counters `bigint`, quantities `double precision`,
  flags `boolean`, payloads `bytea`;
- surrogate ids (gaps, quarantine) are identity columns; they only order rows, and a rolled
  back transaction may leave holes in them, which nothing relies on.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1 = """
CREATE TABLE gateway_streams (
    gateway_id            text   COLLATE "C" NOT NULL,
    outbox_id             text   COLLATE "C" NOT NULL,
    committed_through_seq bigint NOT NULL CHECK (committed_through_seq >= 0),
    agent_version         text   COLLATE "C" NOT NULL,
    first_contact_us      bigint NOT NULL,
    last_contact_us       bigint NOT NULL,
    events_stored         bigint NOT NULL DEFAULT 0,
    duplicates            bigint NOT NULL DEFAULT 0,
    rejects               bigint NOT NULL DEFAULT 0,
    batches               bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway_id, outbox_id)
);

CREATE TABLE gaps (
    gap_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id     text   COLLATE "C" NOT NULL,
    outbox_id      text   COLLATE "C" NOT NULL,
    first_seq      bigint NOT NULL,
    last_seq       bigint NOT NULL CHECK (last_seq >= first_seq),
    reason         text   COLLATE "C" NOT NULL,
    recorded_at_us bigint NOT NULL
);
CREATE INDEX gaps_by_stream ON gaps (gateway_id, outbox_id, gap_id);

CREATE TABLE events (
    event_id       text     COLLATE "C" NOT NULL PRIMARY KEY,
    gateway_id     text     COLLATE "C" NOT NULL,
    outbox_id      text     COLLATE "C" NOT NULL,
    seq            bigint   NOT NULL,
    event_time_us  bigint   NOT NULL,
    biz_location   text     COLLATE "C" NOT NULL,
    biz_step       integer  NOT NULL,
    received_at_us bigint   NOT NULL,
    payload        bytea    NOT NULL
);
CREATE INDEX events_by_time ON events (event_time_us, event_id);
CREATE INDEX events_by_gateway ON events (gateway_id, event_time_us, event_id);
CREATE INDEX events_by_location ON events (biz_location, event_time_us, event_id);

CREATE TABLE event_objects (
    event_id  text COLLATE "C" NOT NULL REFERENCES events (event_id),
    object_id text COLLATE "C" NOT NULL,
    gtin      text COLLATE "C" NOT NULL,
    PRIMARY KEY (event_id, object_id, gtin)
);
CREATE INDEX event_objects_by_object ON event_objects (object_id);
CREATE INDEX event_objects_by_gtin ON event_objects (gtin);

CREATE TABLE quarantine (
    quarantine_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id     text   COLLATE "C" NOT NULL,
    outbox_id      text   COLLATE "C" NOT NULL,
    seq            bigint NOT NULL,
    event_id       text   COLLATE "C" NOT NULL,
    reason         text   COLLATE "C" NOT NULL,
    received_at_us bigint NOT NULL,
    payload        bytea  NOT NULL,
    UNIQUE (gateway_id, outbox_id, seq)
);

CREATE TABLE positions (
    object_id     text    COLLATE "C" NOT NULL PRIMARY KEY,
    epc_uri       text    COLLATE "C" NOT NULL,
    epc_hex       text    COLLATE "C" NOT NULL,
    gtin          text    COLLATE "C" NOT NULL,
    sscc          text    COLLATE "C" NOT NULL,
    biz_location  text    COLLATE "C" NOT NULL,
    read_point_id text    COLLATE "C" NOT NULL,
    biz_step      integer NOT NULL,
    disposition   integer NOT NULL,
    in_transit    boolean NOT NULL,
    present       boolean NOT NULL,
    event_time_us bigint  NOT NULL,
    event_id      text    COLLATE "C" NOT NULL,
    gateway_id    text    COLLATE "C" NOT NULL,
    seq           bigint  NOT NULL
);
CREATE INDEX positions_by_epc_uri ON positions (epc_uri);
CREATE INDEX positions_by_epc_hex ON positions (epc_hex);

CREATE TABLE on_hand (
    gtin             text             COLLATE "C" NOT NULL,
    biz_location     text             COLLATE "C" NOT NULL,
    serialized_count bigint           NOT NULL DEFAULT 0,
    class_quantity   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (gtin, biz_location)
);

CREATE TABLE on_hand_measures (
    gtin         text             COLLATE "C" NOT NULL,
    biz_location text             COLLATE "C" NOT NULL,
    uom          text             COLLATE "C" NOT NULL,
    quantity     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (gtin, biz_location, uom)
);
"""

# Index i holds (description, script) taking the schema from version i to i + 1.
MIGRATIONS: tuple[tuple[str, str], ...] = (("tables of schema version 1, as in the SQLite store", _V1),)
SCHEMA_VERSION = len(MIGRATIONS)
