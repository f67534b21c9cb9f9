"""The exception state machine (ISA-18.2), the priority score and the rules configuration, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from exceptions_testkit import GTIN_CHEAP, GTIN_DEAR, GTIN_MID, MICROS, PICK, site_master

from cloud.config import load_config
from cloud.errors import ConfigError
from cloud.exceptions import lifecycle
from cloud.exceptions.config import load_rules_file, parse_rules
from cloud.exceptions.models import Condition, ExceptionRecord, Policy
from cloud.exceptions.priority import priority_score, score_condition

T0 = 1_738_325_800 * MICROS
POLICY = Policy(
    severity="minor",
    owner_role="inventory_control",
    response_s=300,
    escalation_roles=("shift_lead", "site_manager"),
    escalation_interval_s=600,
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def condition(severity: str = "minor", active: bool = True, occurrence: bool = False) -> Condition:
    return Condition(
        rule="stockout",
        subject=f"{GTIN_CHEAP}@{PICK}",
        active=active,
        policy=POLICY,
        severity=severity,  # type: ignore[arg-type]
        quantity_at_stake=3,
        gtin=GTIN_CHEAP,
        location=PICK,
        details="below minimum",
        occurrence=occurrence,
    )


def raised(severity: str = "minor") -> ExceptionRecord:
    score = priority_score(3, 1.0, 1.0, severity)  # type: ignore[arg-type]
    return lifecycle.raise_exception(condition(severity), score, T0, "ex-1").record


def seconds(count: float) -> int:
    return T0 + round(count * MICROS)


def test_raise_opens_unacknowledged_with_due_time_and_trail() -> None:
    change = lifecycle.raise_exception(condition(), priority_score(3, 1.0, 1.0, "minor"), T0, "ex-1")
    record = change.record
    assert (record.state, record.active, record.acknowledged) == ("open", True, False)
    assert record.response_due_us == seconds(300)
    assert record.owner_role == "inventory_control" and record.occurrences == 1
    assert [(t.action, t.from_state, t.to_state, t.actor) for t in change.transitions] == [
        ("raise", None, "open", "system")
    ]


def test_return_to_normal_unacknowledged_stays_visible_until_acknowledged() -> None:
    cleared = lifecycle.observe_inactive(raised(), seconds(10))
    assert cleared is not None
    assert (cleared.record.state, cleared.record.active, cleared.record.is_closed) == ("cleared", False, False)
    acked = lifecycle.acknowledge(cleared.record, "alice", "seen it", seconds(20))
    assert acked.record.state == "resolved" and acked.record.resolved_at_us == seconds(20)
    assert [(t.action, t.from_state, t.to_state, t.actor, t.reason) for t in acked.transitions] == [
        ("acknowledge", "cleared", "resolved", "alice", "seen it")
    ]


def test_acknowledged_then_normal_resolves_itself() -> None:
    acked = lifecycle.acknowledge(raised(), "alice", "on it", seconds(5)).record
    assert acked.state == "acknowledged"
    cleared = lifecycle.observe_inactive(acked, seconds(60))
    assert cleared is not None and cleared.record.state == "resolved"
    assert cleared.transitions[0].reason == "returned to normal"


def test_repeat_counts_without_a_transition_and_a_comeback_realarms() -> None:
    record = raised()
    score = priority_score(3, 1.0, 1.0, "minor")
    repeat = lifecycle.observe_active(record, condition(), score, seconds(5))
    assert repeat.transitions == () and repeat.record.occurrences == 1 and repeat.record.last_seen_us == seconds(5)
    cleared = lifecycle.observe_inactive(repeat.record, seconds(10))
    assert cleared is not None
    back = lifecycle.observe_active(cleared.record, condition(), score, seconds(20))
    assert back.record.state == "open" and back.record.occurrences == 2
    assert [(t.action, t.from_state, t.to_state) for t in back.transitions] == [("realarm", "cleared", "open")]
    event_driven = lifecycle.observe_active(back.record, condition(occurrence=True), score, seconds(30))
    assert event_driven.record.occurrences == 3


def test_more_severe_realarms_an_acknowledged_exception_and_restarts_escalation() -> None:
    acked = lifecycle.acknowledge(raised(), "alice", "", seconds(5)).record
    worse = lifecycle.observe_active(acked, condition("critical"), priority_score(3, 1.0, 1.0, "critical"), seconds(50))
    assert (worse.record.state, worse.record.severity, worse.record.acknowledged) == ("open", "critical", False)
    assert worse.record.response_due_us == seconds(50 + 300)
    assert [(t.action, t.from_state, t.to_state) for t in worse.transitions] == [("realarm", "acknowledged", "open")]
    milder = lifecycle.observe_active(
        worse.record, condition("minor"), priority_score(3, 1.0, 1.0, "minor"), seconds(60)
    )
    assert milder.record.severity == "critical"  # severity only goes up while the exception lives


def test_escalation_when_overdue_once_per_level_with_the_next_role() -> None:
    record = raised()
    assert lifecycle.tick(record, seconds(299)) is None
    first = lifecycle.tick(record, seconds(300))
    assert first is not None
    assert (first.record.escalation_level, first.record.owner_role) == (1, "shift_lead")
    assert first.record.response_due_us == seconds(300 + 600)
    assert first.transitions[0].action == "escalate" and first.transitions[0].owner_role == "shift_lead"
    assert lifecycle.tick(first.record, seconds(301)) is None  # once per level
    second = lifecycle.tick(first.record, seconds(900))
    assert second is not None and (second.record.escalation_level, second.record.owner_role) == (2, "site_manager")
    assert lifecycle.tick(second.record, seconds(10_000)) is None  # no role left
    acked = lifecycle.acknowledge(raised(), "bob", "", seconds(10))
    assert lifecycle.tick(acked.record, seconds(10_000)) is None  # acknowledged: nothing to escalate


def test_shelve_is_capped_and_unshelves_at_expiry_into_the_state_the_facts_give() -> None:
    shelved = lifecycle.shelve(raised(), "carol", "sensor swap", 7200, 3600, seconds(10))
    assert shelved.record.state == "shelved" and shelved.record.shelved_until_us == seconds(10 + 3600)
    assert "capped at the maximum 3600 s" in shelved.transitions[0].reason
    assert lifecycle.tick(shelved.record, seconds(3600)) is None  # not yet, and no escalation while shelved
    cleared = lifecycle.observe_inactive(shelved.record, seconds(100))
    assert cleared is not None and cleared.record.state == "shelved" and not cleared.record.active
    back = lifecycle.tick(cleared.record, seconds(10 + 3600))
    assert back is not None and back.record.state == "cleared" and back.record.shelved_until_us is None
    assert [(t.action, t.from_state, t.to_state) for t in back.transitions] == [("unshelve", "shelved", "cleared")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda r: lifecycle.acknowledge(lifecycle.acknowledge(r, "a", "", T0).record, "a", "", T0),
            "already acknowledged",
        ),
        (lambda r: lifecycle.resolve(lifecycle.resolve(r, "a", "", T0).record, "a", "", T0), "already resolved"),
        (lambda r: lifecycle.shelve(lifecycle.resolve(r, "a", "", T0).record, "a", "", 60, 600, T0), "is resolved"),
        (lambda r: lifecycle.shelve(r, "a", "", 0, 600, T0), "above 0 s"),
    ],
)
def test_transitions_the_state_does_not_allow_are_refused(make: object, message: str) -> None:
    with pytest.raises(lifecycle.LifecycleError, match=message):
        make(raised())  # type: ignore[operator]


def test_off_delay_waits_before_clearing() -> None:
    record = raised()
    slow = ExceptionRecord(
        **{**{f: getattr(record, f) for f in record.__dataclass_fields__}, "policy": Policy(off_delay_s=30)}
    )
    started = lifecycle.observe_inactive(slow, seconds(10))
    assert started is not None and started.quiet and started.record.active
    assert lifecycle.observe_inactive(started.record, seconds(39)) is None
    done = lifecycle.observe_inactive(started.record, seconds(40))
    assert done is not None and done.record.state == "cleared"


def test_priority_is_money_times_service_times_severity() -> None:
    assert priority_score(3, 50.0, 1.0, "major").priority == (150 + 1) * 1 * 4
    assert priority_score(0, 0.0, 2.5, "critical").priority == 1 * 2.5 * 8  # nothing priced: severity still ranks
    master = site_master()
    # pick-1 serves the strategic tier (weight 10); the cheap SKU does too, the dear one does not.
    cheap = score_condition(master, GTIN_CHEAP, PICK, 3, "major")
    dear = score_condition(master, GTIN_DEAR, "urn:tallyport:loc:dc1:aisle-7", 3, "major")
    mid = score_condition(master, GTIN_MID, PICK, 3, "major")
    assert (cheap.value_at_stake, cheap.service_weight, cheap.priority) == (3.0, 10.0, 160.0)
    assert (dear.value_at_stake, dear.service_weight, dear.priority) == (150.0, 1.0, 604.0)
    assert (mid.value_at_stake, mid.service_weight, mid.priority) == (60.0, 10.0, 2440.0)
    assert sorted([cheap, dear, mid], key=lambda s: -s.priority) == [mid, dear, cheap]


def test_rules_errors_name_the_source_the_entry_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(
            {
                "rule": [
                    {"kind": "stockout", "min_on_hand": 3},
                    {"kind": "dwell", "location_type": "x", "dwell_max_s": -5},
                ]
            },
            "rules.toml",
        )
    assert str(caught.value) == "rules.toml: [[rule]] #2 (kind = 'dwell').dwell_max_s: expected a number > 0, got -5"
    with pytest.raises(ConfigError, match=r"#1 \(kind = 'stockout'\): min_on_hand is required for kind 'stockout'"):
        parse_rules({"rule": [{"kind": "stockout"}]}, "rules.toml")
    with pytest.raises(ConfigError, match=r"#1 \(kind = 'excess'\): dwell_max_s is a setting of kind 'dwell'"):
        parse_rules({"rule": [{"kind": "excess", "max_on_hand": 1, "dwell_max_s": 5}]}, "rules.toml")
    with pytest.raises(ConfigError, match=r"rules.toml: \[defaults\].response_s: expected a number > 0, got 0"):
        parse_rules({"defaults": {"response_s": 0}}, "rules.toml")
    with pytest.raises(ConfigError, match=r"unknown CBV disposition 'lost'"):
        parse_rules({"rule": [{"kind": "unexpected_movement", "blocked_dispositions": ["lost"]}]}, "r.toml")
    cloud_toml = tmp_path / "cloud.toml"
    cloud_toml.write_text('[exceptions]\nrules_file = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"cloud.toml: \[exceptions\].rules_file: missing.toml: cannot read"):
        load_config(cloud_toml)


def test_the_most_specific_entry_wins() -> None:
    book = parse_rules(
        {
            "rule": [
                {"kind": "stockout", "min_on_hand": 1},
                {"kind": "stockout", "abc_class": "A", "min_on_hand": 5},
                {"kind": "stockout", "abc_class": "A", "location_type": "forward_pick", "min_on_hand": 10},
                {"kind": "stockout", "gtin": GTIN_DEAR, "location": PICK, "enabled": False},
            ]
        },
        "r",
    )
    master = site_master()
    assert book.settings_for("stockout", master, gtin=GTIN_CHEAP, location=PICK).number("min_on_hand", 0) == 10  # type: ignore[union-attr]
    aisle = "urn:tallyport:loc:dc1:aisle-7"
    assert book.settings_for("stockout", master, gtin=GTIN_CHEAP, location=aisle).number("min_on_hand", 0) == 5  # type: ignore[union-attr]
    assert book.settings_for("stockout", master, gtin="00000000000000", location=aisle).number("min_on_hand", 0) == 1  # type: ignore[union-attr]
    assert book.settings_for("stockout", master, gtin=GTIN_DEAR, location=PICK) is None


@pytest.mark.parametrize("name", ["deploy/demo/exception-rules.toml", "cloud/exceptions/rules.sample.toml"])
def test_shipped_rules_files_are_valid(name: str) -> None:
    book = load_rules_file(REPO_ROOT / name)
    assert {"dwell", "excursion", "stale_feed", "unexpected_movement"} <= book.kinds()
