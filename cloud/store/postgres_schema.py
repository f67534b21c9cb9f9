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

# The subsystems' tables, as in the SQLite store's migrations 2 to 5.
_PG_V2_MASTERDATA = """
CREATE TABLE customer_tiers (
    name          text             COLLATE "C" NOT NULL PRIMARY KEY,
    weight        double precision NOT NULL CHECK (weight > 0),
    description   text             COLLATE "C" NOT NULL,
    updated_at_us bigint           NOT NULL
);

CREATE TABLE locations (
    location_id   text   COLLATE "C" NOT NULL PRIMARY KEY,
    name          text   COLLATE "C" NOT NULL,
    level         text   COLLATE "C" NOT NULL CHECK (level IN ('site', 'zone', 'door', 'read_point')),
    parent_id     text   COLLATE "C" NOT NULL,
    location_type text   COLLATE "C" NOT NULL,
    customer_tier text   COLLATE "C" NOT NULL,
    updated_at_us bigint NOT NULL
);
CREATE INDEX locations_by_parent ON locations (parent_id);

CREATE TABLE skus (
    gtin               text             COLLATE "C" NOT NULL PRIMARY KEY,
    description        text             COLLATE "C" NOT NULL,
    unit_cost          double precision NOT NULL CHECK (unit_cost >= 0),
    currency           text             COLLATE "C" NOT NULL,
    temperature_min_c  double precision,
    temperature_max_c  double precision,
    humidity_min_pct   double precision,
    humidity_max_pct   double precision,
    abc_class          text             COLLATE "C" NOT NULL CHECK (abc_class IN ('A', 'B', 'C')),
    lifecycle          text             COLLATE "C" NOT NULL CHECK (lifecycle IN ('active', 'phase_out', 'obsolete')),
    customer_tier      text             COLLATE "C" NOT NULL,
    annual_usage_units double precision NOT NULL CHECK (annual_usage_units >= 0),
    updated_at_us      bigint           NOT NULL
);
"""
_PG_V3_EXCEPTIONS = """
CREATE TABLE exceptions (
    exception_id           text             COLLATE "C" NOT NULL PRIMARY KEY,
    rule                   text             COLLATE "C" NOT NULL,
    subject                text             COLLATE "C" NOT NULL,
    open_key               text             COLLATE "C" UNIQUE,
    state                  text             COLLATE "C" NOT NULL,
    active                 integer          NOT NULL CHECK (active IN (0, 1)),
    acknowledged           integer          NOT NULL CHECK (acknowledged IN (0, 1)),
    severity               text             COLLATE "C" NOT NULL,
    severity_rank          integer          NOT NULL,
    priority               double precision NOT NULL,
    value_at_stake         double precision NOT NULL,
    quantity_at_stake      double precision NOT NULL,
    service_weight         double precision NOT NULL,
    gtin                   text             COLLATE "C" NOT NULL,
    location               text             COLLATE "C" NOT NULL,
    details                text             COLLATE "C" NOT NULL,
    owner_role             text             COLLATE "C" NOT NULL,
    escalation_level       integer          NOT NULL,
    response_due_us        bigint           NOT NULL,
    raised_at_us           bigint           NOT NULL,
    last_seen_us           bigint           NOT NULL,
    updated_at_us          bigint           NOT NULL,
    occurrences            bigint           NOT NULL,
    cleared_at_us          bigint,
    resolved_at_us         bigint,
    shelved_until_us       bigint,
    clear_pending_since_us bigint,
    policy                 text             COLLATE "C" NOT NULL,
    version                bigint           NOT NULL
);
CREATE INDEX exceptions_by_priority ON exceptions (priority DESC, exception_id);
CREATE INDEX exceptions_by_rule ON exceptions (rule, open_key);
CREATE INDEX exceptions_by_raised ON exceptions (raised_at_us);
CREATE INDEX exceptions_by_resolved ON exceptions (resolved_at_us);

CREATE TABLE exception_transitions (
    transition_id    bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exception_id     text    COLLATE "C" NOT NULL REFERENCES exceptions (exception_id),
    at_us            bigint  NOT NULL,
    actor            text    COLLATE "C" NOT NULL,
    action           text    COLLATE "C" NOT NULL,
    from_state       text    COLLATE "C",
    to_state         text    COLLATE "C" NOT NULL,
    reason           text    COLLATE "C" NOT NULL,
    escalation_level integer NOT NULL,
    owner_role       text    COLLATE "C" NOT NULL
);
CREATE INDEX exception_transitions_by_exception ON exception_transitions (exception_id, transition_id);

CREATE TABLE exception_pending (
    open_key        text   COLLATE "C" NOT NULL PRIMARY KEY,
    rule            text   COLLATE "C" NOT NULL,
    active_since_us bigint NOT NULL
);
CREATE INDEX exception_pending_by_rule ON exception_pending (rule);

CREATE TABLE exception_sensor_readings (
    location        text             COLLATE "C" NOT NULL,
    measurement     text             COLLATE "C" NOT NULL,
    device_id       text             COLLATE "C" NOT NULL,
    reading_time_us bigint           NOT NULL,
    value           double precision NOT NULL,
    PRIMARY KEY (location, measurement, device_id, reading_time_us)
);
CREATE INDEX exception_sensor_readings_by_time ON exception_sensor_readings (reading_time_us);

CREATE TABLE exception_item_states (
    object_id         text    COLLATE "C" NOT NULL PRIMARY KEY,
    shipped_at_us     bigint,
    shipped_location  text    COLLATE "C" NOT NULL,
    disposition       integer NOT NULL,
    disposition_at_us bigint  NOT NULL,
    place             text    COLLATE "C" NOT NULL DEFAULT '',
    placed_at_us      bigint  NOT NULL DEFAULT 0
);
"""
_PG_V4_RECONCILIATION = """
CREATE TABLE cycle_count_batches (
    batch_id       text   COLLATE "C" NOT NULL PRIMARY KEY,
    label          text   COLLATE "C" NOT NULL,
    imported_at_us bigint NOT NULL,
    row_count      bigint NOT NULL,
    rejected_count bigint NOT NULL
);

CREATE TABLE cycle_counts (
    batch_id         text             COLLATE "C" NOT NULL REFERENCES cycle_count_batches (batch_id),
    row_no           bigint           NOT NULL,
    biz_location     text             COLLATE "C" NOT NULL,
    gtin             text             COLLATE "C" NOT NULL,
    counted_quantity double precision NOT NULL CHECK (counted_quantity >= 0),
    counted_at_us    bigint           NOT NULL,
    counter_id       text             COLLATE "C" NOT NULL,
    epcs_counted     integer          NOT NULL CHECK (epcs_counted IN (0, 1)),
    epcs             text             COLLATE "C" NOT NULL,
    PRIMARY KEY (batch_id, row_no)
);

CREATE TABLE onhand_snapshots (
    snapshot_id    text   COLLATE "C" NOT NULL PRIMARY KEY,
    source         text   COLLATE "C" NOT NULL,
    origin         text   COLLATE "C" NOT NULL CHECK (origin IN ('import', 'pull')),
    taken_at_us    bigint NOT NULL,
    imported_at_us bigint NOT NULL,
    row_count      bigint NOT NULL,
    rejected_count bigint NOT NULL
);
CREATE INDEX onhand_snapshots_by_source ON onhand_snapshots (source, imported_at_us);

CREATE TABLE onhand_snapshot_rows (
    snapshot_id  text             COLLATE "C" NOT NULL REFERENCES onhand_snapshots (snapshot_id),
    biz_location text             COLLATE "C" NOT NULL,
    gtin         text             COLLATE "C" NOT NULL,
    quantity     double precision NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (snapshot_id, biz_location, gtin)
);

CREATE TABLE reconciliation_runs (
    run_id               text             COLLATE "C" NOT NULL PRIMARY KEY,
    source_kind          text             COLLATE "C" NOT NULL CHECK (source_kind IN ('cycle_count', 'snapshot')),
    source               text             COLLATE "C" NOT NULL,
    subject_id           text             COLLATE "C" NOT NULL,
    rows_compared        bigint           NOT NULL,
    accurate             bigint           NOT NULL,
    gross_variance_value double precision NOT NULL,
    net_variance_value   double precision NOT NULL,
    system_value         double precision NOT NULL,
    missing_epcs         bigint           NOT NULL,
    unexpected_epcs      bigint           NOT NULL,
    taken_at_us          bigint           NOT NULL,
    recorded_at_us       bigint           NOT NULL,
    UNIQUE (source_kind, subject_id)
);

CREATE TABLE reconciliation_drifts (
    run_id           text             COLLATE "C" NOT NULL REFERENCES reconciliation_runs (run_id),
    row_no           bigint           NOT NULL,
    source_kind      text             COLLATE "C" NOT NULL,
    source           text             COLLATE "C" NOT NULL,
    biz_location     text             COLLATE "C" NOT NULL,
    gtin             text             COLLATE "C" NOT NULL,
    abc_class        text             COLLATE "C" NOT NULL,
    system_quantity  double precision NOT NULL,
    counted_quantity double precision NOT NULL,
    variance         double precision NOT NULL,
    unit_cost        double precision NOT NULL,
    variance_value   double precision NOT NULL,
    tolerance_pct    double precision NOT NULL,
    within_tolerance integer          NOT NULL CHECK (within_tolerance IN (0, 1)),
    counted_at_us    bigint           NOT NULL,
    recorded_at_us   bigint           NOT NULL,
    PRIMARY KEY (run_id, row_no)
);
CREATE INDEX reconciliation_drifts_by_time ON reconciliation_drifts (recorded_at_us, run_id, row_no);
CREATE INDEX reconciliation_drifts_by_count_time ON reconciliation_drifts (source_kind, counted_at_us);
CREATE INDEX reconciliation_drifts_by_place ON reconciliation_drifts (biz_location, gtin);

CREATE TABLE reconciliation_epc_drifts (
    run_id          text   COLLATE "C" NOT NULL REFERENCES reconciliation_runs (run_id),
    row_no          bigint NOT NULL,
    biz_location    text   COLLATE "C" NOT NULL,
    gtin            text   COLLATE "C" NOT NULL,
    epc             text   COLLATE "C" NOT NULL,
    kind            text   COLLATE "C" NOT NULL CHECK (kind IN ('missing', 'unexpected')),
    system_location text   COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, row_no)
);

-- Counts that list their EPCs look up the tags the system has at one (location, gtin).
CREATE INDEX positions_by_place ON positions (biz_location, gtin);
"""
_PG_V5_GATEWAY_ALARMS = """
CREATE TABLE gateway_alarms (
    gateway_id    text   COLLATE "C" NOT NULL,
    code          text   COLLATE "C" NOT NULL,
    severity      text   COLLATE "C" NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    message       text   COLLATE "C" NOT NULL,
    raised_at_us  bigint NOT NULL,
    updated_at_us bigint NOT NULL,
    active        integer NOT NULL CHECK (active IN (0, 1)),
    PRIMARY KEY (gateway_id, code)
);
CREATE INDEX gateway_alarms_by_activity ON gateway_alarms (active, gateway_id);
"""

# As the SQLite store's migration 6: the measured gateway clock offset, NULL until measured.
_PG_V6_CLOCK_OFFSET = """
ALTER TABLE gateway_streams ADD COLUMN clock_offset_ms bigint;
"""

# As the SQLite store's migration 7: seq ranges committed above committed_through_seq, "first-last,...".
_PG_V7_COMMITTED_RANGES = """
ALTER TABLE gateway_streams ADD COLUMN committed_ranges text COLLATE "C" NOT NULL DEFAULT '';
"""

# Index i holds (description, script) taking the schema from version i to i + 1.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("tables of schema version 1, as in the SQLite store", _V1),
    ("master data: skus, locations, customer_tiers", _PG_V2_MASTERDATA),
    ("exceptions and their audit trail", _PG_V3_EXCEPTIONS),
    ("reconciliation: cycle counts, snapshots, drifts", _PG_V4_RECONCILIATION),
    ("gateway alarms", _PG_V5_GATEWAY_ALARMS),
    ("gateway_streams.clock_offset_ms", _PG_V6_CLOCK_OFFSET),
    ("gateway_streams.committed_ranges", _PG_V7_COMMITTED_RANGES),
)
SCHEMA_VERSION = len(MIGRATIONS)
