"""The outbox's SQLite schema and its migrations, applied in order by `PRAGMA user_version`.

The schema of the store is versioned apart from the gateway config: changing a
config never touches buffered events.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the outbox itself. seq is the integer primary key (the rowid): time-ordered keys keep inserts
    # appending to the b-tree. AUTOINCREMENT keeps seq monotonic even after every row was acknowledged
    # and deleted, so the cloud never sees a seq reused within one outbox_id.
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_class INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        reason_code TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw BLOB NOT NULL,
        raw_sha256 TEXT NOT NULL
    );
    -- The last frame committed per device, so a frame the device retransmits because the agent
    -- died between commit and ACK is recognised and not stored twice.
    CREATE TABLE device_frames (
        device TEXT PRIMARY KEY,
        raw_sha256 TEXT NOT NULL,
        committed_at_ms INTEGER NOT NULL,
        acked INTEGER NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: the read journal. Reads that only become an event later (RFID reads inside an open portal
    # session) are committed here first so their source can be acknowledged at once; the commit that
    # stores the events they produced deletes them, so a restart replays exactly the unconsumed ones.
    """
    CREATE TABLE read_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    """,
    # 3: digests of the reader messages whose reads were journaled, so a message the broker redelivers
    # (the agent died between the journal commit and its PUBACK) is acknowledged and not read twice.
    """
    CREATE TABLE journal_messages (
        digest TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL
    );
    CREATE INDEX journal_messages_by_age ON journal_messages (received_at_ms);
    """,
    # 4: whether a device's last frame was refused (quarantined and NAKed). A resend of it after a restart
    # is then NAKed again and not quarantined twice, exactly as within one process lifetime; without it a
    # resend after a crash between the quarantine commit and the NAK was taken for an ACKed retransmission.
    """
    ALTER TABLE device_frames ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
    """,
)
