"""The SQLite schema as an ordered list of migrations, applied by `PRAGMA user_version`.

Migration N (1-based) takes the database from user_version N-1 to N, inside one transaction
that also sets the new user_version, so a crash mid-migration leaves the previous version.
Never edit a shipped migration: append a new one.

Tables (times are integer microseconds since the epoch, UTC; enums are protobuf numbers):
- gateway_streams: delivery state per (gateway_id, outbox_id): committed_through_seq, contacts, counters,
                   the gateway's measured clock offset (migration 6), the seq ranges committed above
                   committed_through_seq as "first-last,..." text (migration 7)
- gaps:            seq ranges that will never arrive, with the reason
- events:          every valid event once (event_id is the key), filter columns + payload
- event_objects:   (event_id, object_id, gtin) for the object and GTIN filters of ListEvents
- quarantine:      rejected events with the reason; one row per (gateway_id, outbox_id, seq)
- positions:       the newest known position of each serialised object
- on_hand:         serialized_count and class_quantity per (gtin, biz_location)
- on_hand_measures: measured quantities (uom such as KGM) per (gtin, biz_location, uom), kept out of counts
- gateway_alarms:  the alarms each gateway last reported (GatewayStatus), one row per (gateway_id, code), active 0/1
- customer_tiers:  master data: tier name, weight (> 0), description
- locations:       master data: the site > zone > door > read_point hierarchy (parent_id "" for a site)
- skus:            master data per GTIN-14: cost, condition range (NULL bounds: none), ABC class, lifecycle
- exceptions:      one row per exception (open_key 'rule|subject' while unresolved, NULL after: one open per key)
- exception_transitions: the audit trail of every exception (who, when, why, from -> to)
- exception_pending, exception_sensor_readings, exception_item_states: what the exception rules remember
                   (on-delays running, recent climate readings per location, per item: shipped,
                   disposition, where and since when it stands)
- cycle_count_batches, cycle_counts: imported cycle counts (epcs: newline-separated, epcs_counted 0/1)
- onhand_snapshots, onhand_snapshot_rows: ERP/WMS set-on-hand snapshots per source (origin import | pull)
- reconciliation_runs: one comparison of a count batch or a snapshot, with its totals (once per subject)
- reconciliation_drifts: every compared (location, gtin): system vs counted, variance, value, tolerance
- reconciliation_epc_drifts: tags missing from, or unexpected in, a count that listed its EPCs
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

# Master data: SKUs, the location hierarchy, customer tiers (cloud.masterdata).
_V2_MASTERDATA = """
CREATE TABLE customer_tiers (
    name          TEXT    NOT NULL PRIMARY KEY,
    weight        REAL    NOT NULL CHECK (weight > 0),
    description   TEXT    NOT NULL,
    updated_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE locations (
    location_id   TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    level         TEXT    NOT NULL CHECK (level IN ('site', 'zone', 'door', 'read_point')),
    parent_id     TEXT    NOT NULL,
    location_type TEXT    NOT NULL,
    customer_tier TEXT    NOT NULL,
    updated_at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX locations_by_parent ON locations (parent_id);

CREATE TABLE skus (
    gtin               TEXT    NOT NULL PRIMARY KEY,
    description        TEXT    NOT NULL,
    unit_cost          REAL    NOT NULL CHECK (unit_cost >= 0),
    currency           TEXT    NOT NULL,
    temperature_min_c  REAL,
    temperature_max_c  REAL,
    humidity_min_pct   REAL,
    humidity_max_pct   REAL,
    abc_class          TEXT    NOT NULL CHECK (abc_class IN ('A', 'B', 'C')),
    lifecycle          TEXT    NOT NULL CHECK (lifecycle IN ('active', 'phase_out', 'obsolete')),
    customer_tier      TEXT    NOT NULL,
    annual_usage_units REAL    NOT NULL CHECK (annual_usage_units >= 0),
    updated_at_us      INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Exceptions with their audit trail, and the state the rules keep (cloud.exceptions).
_V3_EXCEPTIONS = """
CREATE TABLE exceptions (
    exception_id           TEXT    NOT NULL PRIMARY KEY,
    rule                   TEXT    NOT NULL,
    subject                TEXT    NOT NULL,
    open_key               TEXT    UNIQUE,  -- 'rule|subject' until resolved, then NULL: one open per key
    state                  TEXT    NOT NULL,
    active                 INTEGER NOT NULL CHECK (active IN (0, 1)),
    acknowledged           INTEGER NOT NULL CHECK (acknowledged IN (0, 1)),
    severity               TEXT    NOT NULL,
    severity_rank          INTEGER NOT NULL,
    priority               REAL    NOT NULL,
    value_at_stake         REAL    NOT NULL,
    quantity_at_stake      REAL    NOT NULL,
    service_weight         REAL    NOT NULL,
    gtin                   TEXT    NOT NULL,
    location               TEXT    NOT NULL,
    details                TEXT    NOT NULL,
    owner_role             TEXT    NOT NULL,
    escalation_level       INTEGER NOT NULL,
    response_due_us        INTEGER NOT NULL,
    raised_at_us           INTEGER NOT NULL,
    last_seen_us           INTEGER NOT NULL,
    updated_at_us          INTEGER NOT NULL,
    occurrences            INTEGER NOT NULL,
    cleared_at_us          INTEGER,
    resolved_at_us         INTEGER,
    shelved_until_us       INTEGER,
    clear_pending_since_us INTEGER,
    policy                 TEXT    NOT NULL,
    version                INTEGER NOT NULL
);
CREATE INDEX exceptions_by_priority ON exceptions (priority DESC, exception_id);
CREATE INDEX exceptions_by_rule ON exceptions (rule, open_key);
CREATE INDEX exceptions_by_raised ON exceptions (raised_at_us);
CREATE INDEX exceptions_by_resolved ON exceptions (resolved_at_us);

CREATE TABLE exception_transitions (
    transition_id    INTEGER PRIMARY KEY,
    exception_id     TEXT    NOT NULL REFERENCES exceptions (exception_id),
    at_us            INTEGER NOT NULL,
    actor            TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    from_state       TEXT,
    to_state         TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    escalation_level INTEGER NOT NULL,
    owner_role       TEXT    NOT NULL
);
CREATE INDEX exception_transitions_by_exception ON exception_transitions (exception_id, transition_id);

CREATE TABLE exception_pending (
    open_key        TEXT    NOT NULL PRIMARY KEY,
    rule            TEXT    NOT NULL,
    active_since_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX exception_pending_by_rule ON exception_pending (rule);

CREATE TABLE exception_sensor_readings (
    location        TEXT    NOT NULL,
    measurement     TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    reading_time_us INTEGER NOT NULL,
    value           REAL    NOT NULL,
    PRIMARY KEY (location, measurement, device_id, reading_time_us)
) WITHOUT ROWID;
CREATE INDEX exception_sensor_readings_by_time ON exception_sensor_readings (reading_time_us);

CREATE TABLE exception_item_states (
    object_id         TEXT    NOT NULL PRIMARY KEY,
    shipped_at_us     INTEGER,
    shipped_location  TEXT    NOT NULL,
    disposition       INTEGER NOT NULL,
    disposition_at_us INTEGER NOT NULL,
    place             TEXT    NOT NULL DEFAULT '',
    placed_at_us      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

# Cycle counts, ERP/WMS snapshots and the drifts found against them (cloud.reconciliation).
_V4_RECONCILIATION = """
CREATE TABLE cycle_count_batches (
    batch_id       TEXT    NOT NULL PRIMARY KEY,
    label          TEXT    NOT NULL,
    imported_at_us INTEGER NOT NULL,
    row_count      INTEGER NOT NULL,
    rejected_count INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE cycle_counts (
    batch_id         TEXT    NOT NULL REFERENCES cycle_count_batches (batch_id),
    row_no           INTEGER NOT NULL,
    biz_location     TEXT    NOT NULL,
    gtin             TEXT    NOT NULL,
    counted_quantity REAL    NOT NULL CHECK (counted_quantity >= 0),
    counted_at_us    INTEGER NOT NULL,
    counter_id       TEXT    NOT NULL,
    epcs_counted     INTEGER NOT NULL CHECK (epcs_counted IN (0, 1)),
    epcs             TEXT    NOT NULL,
    PRIMARY KEY (batch_id, row_no)
) WITHOUT ROWID;

CREATE TABLE onhand_snapshots (
    snapshot_id    TEXT    NOT NULL PRIMARY KEY,
    source         TEXT    NOT NULL,
    origin         TEXT    NOT NULL CHECK (origin IN ('import', 'pull')),
    taken_at_us    INTEGER NOT NULL,
    imported_at_us INTEGER NOT NULL,
    row_count      INTEGER NOT NULL,
    rejected_count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX onhand_snapshots_by_source ON onhand_snapshots (source, imported_at_us);

CREATE TABLE onhand_snapshot_rows (
    snapshot_id  TEXT NOT NULL REFERENCES onhand_snapshots (snapshot_id),
    biz_location TEXT NOT NULL,
    gtin         TEXT NOT NULL,
    quantity     REAL NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (snapshot_id, biz_location, gtin)
) WITHOUT ROWID;

CREATE TABLE reconciliation_runs (
    run_id               TEXT    NOT NULL PRIMARY KEY,
    source_kind          TEXT    NOT NULL CHECK (source_kind IN ('cycle_count', 'snapshot')),
    source               TEXT    NOT NULL,
    subject_id           TEXT    NOT NULL,
    rows_compared        INTEGER NOT NULL,
    accurate             INTEGER NOT NULL,
    gross_variance_value REAL    NOT NULL,
    net_variance_value   REAL    NOT NULL,
    system_value         REAL    NOT NULL,
    missing_epcs         INTEGER NOT NULL,
    unexpected_epcs      INTEGER NOT NULL,
    taken_at_us          INTEGER NOT NULL,
    recorded_at_us       INTEGER NOT NULL,
    UNIQUE (source_kind, subject_id)
) WITHOUT ROWID;

CREATE TABLE reconciliation_drifts (
    run_id           TEXT    NOT NULL REFERENCES reconciliation_runs (run_id),
    row_no           INTEGER NOT NULL,
    source_kind      TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    biz_location     TEXT    NOT NULL,
    gtin             TEXT    NOT NULL,
    abc_class        TEXT    NOT NULL,
    system_quantity  REAL    NOT NULL,
    counted_quantity REAL    NOT NULL,
    variance         REAL    NOT NULL,
    unit_cost        REAL    NOT NULL,
    variance_value   REAL    NOT NULL,
    tolerance_pct    REAL    NOT NULL,
    within_tolerance INTEGER NOT NULL CHECK (within_tolerance IN (0, 1)),
    counted_at_us    INTEGER NOT NULL,
    recorded_at_us   INTEGER NOT NULL,
    PRIMARY KEY (run_id, row_no)
) WITHOUT ROWID;
CREATE INDEX reconciliation_drifts_by_time ON reconciliation_drifts (recorded_at_us, run_id, row_no);
CREATE INDEX reconciliation_drifts_by_count_time ON reconciliation_drifts (source_kind, counted_at_us);
CREATE INDEX reconciliation_drifts_by_place ON reconciliation_drifts (biz_location, gtin);

CREATE TABLE reconciliation_epc_drifts (
    run_id          TEXT    NOT NULL REFERENCES reconciliation_runs (run_id),
    row_no          INTEGER NOT NULL,
    biz_location    TEXT    NOT NULL,
    gtin            TEXT    NOT NULL,
    epc             TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('missing', 'unexpected')),
    system_location TEXT    NOT NULL,
    PRIMARY KEY (run_id, row_no)
) WITHOUT ROWID;

-- Counts that list their EPCs look up the tags the system has at one (location, gtin).
CREATE INDEX positions_by_place ON positions (biz_location, gtin);
"""

# Alarms gateways report on their uplink (cloud.ingest).
_V5_GATEWAY_ALARMS = """
CREATE TABLE gateway_alarms (
    gateway_id    TEXT    NOT NULL,
    code          TEXT    NOT NULL,
    severity      TEXT    NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    message       TEXT    NOT NULL,
    raised_at_us  INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    PRIMARY KEY (gateway_id, code)
) WITHOUT ROWID;
CREATE INDEX gateway_alarms_by_activity ON gateway_alarms (active, gateway_id);
"""

# Each stream's measured gateway clock offset (cloud time - gateway time, ms; NULL: not measured).
_V6_CLOCK_OFFSET = """
ALTER TABLE gateway_streams ADD COLUMN clock_offset_ms INTEGER;
"""

# Seq ranges committed above committed_through_seq (out-of-order uplink batches): "first-last,...".
_V7_COMMITTED_RANGES = """
ALTER TABLE gateway_streams ADD COLUMN committed_ranges TEXT NOT NULL DEFAULT '';
"""

# Index i holds the script that takes user_version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    _V1,
    _V2_MASTERDATA,
    _V3_EXCEPTIONS,
    _V4_RECONCILIATION,
    _V5_GATEWAY_ALARMS,
    _V6_CLOCK_OFFSET,
    _V7_COMMITTED_RANGES,
)
SCHEMA_VERSION = len(MIGRATIONS)
