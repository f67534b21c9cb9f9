"""Master data files: CSV and TOML rows into records; each bad row rejected with its file, line and reason."""

from __future__ import annotations

from pathlib import Path

from cloud.masterdata.files import LoadResult, Origin, Rejection, read_file, read_files
from cloud.masterdata.models import ConditionRange, CustomerTier, Location, Sku
from edge.epc import decode_epc
from hw_sim.scanner.scenario import load_scenario
from hw_sim.site import rfid_portal

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_TOML = REPO_ROOT / "deploy" / "demo" / "masterdata.toml"
DEMO_CSV_DIR = REPO_ROOT / "deploy" / "demo" / "masterdata-csv"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def messages(result: LoadResult) -> list[str]:
    return [str(rejection) for rejection in result.rejected]


# ---- CSV -------------------------------------------------------------------------------------


def test_csv_skus_bad_rows_are_rejected_with_line_and_reason_and_good_rows_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "skus.csv",
        "gtin,description,unit_cost,abc_class,temperature_min_c,temperature_max_c\n"
        "09501101530003,Vaccine,184,A,2,8\n"
        "\n"
        "# a comment line\n"
        "09501101530004,Wrong check digit,1,B,,\n"
        '05901234123457,"Gel, 500 ml",3.10,,,\n'
        "10614141073464,Yoghurt,abc,B,2,8\n"
        "10614141497567,Insulin,96,A,8,2\n"
        "10614142655096,Plasma,420,A,-25\n"
        '10614143667517,"Gloves\n(two-line description)",38,E,,\n',
    )
    result = read_file(path)
    assert messages(result) == [
        f"{path}:5: gtin '09501101530004': check digit should be 3",
        f"{path}:7: unit_cost: expected a number like 2.5, got 'abc'",
        f"{path}:8: condition: temperature min 8 is above max 2",
        f"{path}:9: expected 6 cells as in the header, got 5",
        f"{path}:10: description: control character in 'Gloves\\n(two-line description)'",
    ]
    assert [sourced.record for sourced in result.accepted] == [
        Sku("09501101530003", "Vaccine", 184.0, abc_class="A", condition=ConditionRange(2.0, 8.0)),
        Sku("05901234123457", "Gel, 500 ml", 3.1),
    ]
    assert [sourced.origin.line for sourced in result.accepted] == [2, 6]


def test_csv_kind_is_told_by_the_header(tmp_path: Path) -> None:
    locations = write(
        tmp_path,
        "places.csv",
        "location_id,name,level,parent_id,location_type\n"
        "urn:loc:dc1,DC1,site,,distribution_center\n"
        "urn:loc:dc1:cold,Cold room,zone,urn:loc:dc1,Cold Storage\n"
        "urn:loc:dc1:bad,Bad,floor,urn:loc:dc1,\n",
    )
    tiers = write(tmp_path, "t.csv", "\ufeffname,weight,description\nstrategic,3,Key accounts\nbasic,0,Spot\n")
    result = read_files([locations, tiers])
    assert messages(result) == [
        f"{locations}:3: location_type: expected a snake_case word like 'cold_storage', got 'Cold Storage'",
        f"{locations}:4: level: expected one of site, zone, door, read_point, got 'floor'",
        f"{tiers}:3: weight: expected a number > 0, got 0",
    ]
    assert [sourced.record for sourced in result.accepted] == [
        Location("urn:loc:dc1", "DC1", "site", "", "distribution_center"),
        CustomerTier("strategic", 3.0, "Key accounts"),
    ]


def test_a_csv_header_problem_rejects_the_file_at_its_line(tmp_path: Path) -> None:
    unknown = write(tmp_path, "a.csv", "# master data\ngtin,description,unit_cost,colour\n09501101530003,V,1,red\n")
    missing = write(tmp_path, "b.csv", "location_id,name\nurn:loc:x,X\n")
    nothing = write(tmp_path, "c.csv", "sku,price\n1,2\n")
    empty = write(tmp_path, "d.csv", "\n# only a comment\n")
    broken = write(tmp_path, "e.csv", 'name,weight\nbasic,1\n"unterminated,2\n')
    result = read_files([unknown, missing, nothing, empty, broken])
    assert messages(result)[:4] == [
        f"{unknown}:2: unknown column 'colour' for sku rows; expected some of gtin, description, unit_cost, "
        "currency, abc_class, lifecycle, customer_tier, annual_usage_units, temperature_min_c, temperature_max_c, "
        "humidity_min_pct, humidity_max_pct",
        f"{missing}:1: missing column level for location rows",
        f"{nothing}:1: cannot tell the kind from the header row; expected a 'gtin' column (SKUs), a 'location_id' "
        "column (locations) or 'name' and 'weight' (customer tiers)",
        f"{empty}:1: empty: expected a header row, e.g. a 'gtin' column (SKUs), a 'location_id' column (locations) "
        "or 'name' and 'weight' (customer tiers)",
    ]
    assert messages(result)[4].startswith(f"{broken}:3: not valid CSV:")
    assert [sourced.record for sourced in result.accepted] == [CustomerTier("basic", 1.0)]


def test_files_that_cannot_be_read_are_rejections_not_crashes(tmp_path: Path) -> None:
    latin = tmp_path / "l.csv"
    latin.write_bytes(b"name,weight\nbasic,1\ncaf\xe9,2\n")
    result = read_files([tmp_path / "missing.toml", write(tmp_path, "x.json", "{}"), latin])
    assert messages(result) == [
        f"{tmp_path / 'missing.toml'}: cannot read the file: No such file or directory",
        f"{tmp_path / 'x.json'}: unknown file type '.json'; expected .csv or .toml",
        f"{latin}:3: not UTF-8 text (byte 0xe9)",
    ]


# ---- TOML ------------------------------------------------------------------------------------


def test_toml_bad_tables_are_rejected_with_line_index_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "md.toml",
        """# tiers
[[customer_tier]]
name = "strategic"
weight = 3.0

[[customer_tier]]
name = "basic"
weight = "1.0"

[[location]]
location_id = "urn:loc:dc1"
name = "DC1"
level = "site"

[[location]]
location_id = "urn:loc:dc1:z"
name = "Zone"
level = "zone"
colour = "blue"

[[sku]]
gtin = "09501101530003"
description = "Vaccine"
unit_cost = 184
temperature_min_c = 2
temperature_max_c = 8

[[sku]]
gtin = 9501101530003
description = "Number, not text"
unit_cost = 1.0

[[sku]]
gtin = "05901234123457"
unit_cost = 3.1

[[skus]]
gtin = "05901234123457"
""",
    )
    result = read_file(path)
    assert messages(result) == [
        f"{path}:6: [[customer_tier]] #2: weight: expected a number, got '1.0'",
        f"{path}:15: [[location]] #2: unknown key 'colour'; expected some of location_id, name, level, parent_id, "
        "location_type, customer_tier",
        f"{path}:28: [[sku]] #2: gtin: expected text in quotes, got 9501101530003",
        f"{path}:33: [[sku]] #3: description: required",
        f"{path}:37: unknown table 'skus'; expected [[customer_tier]], [[location]], [[sku]]",
    ]
    assert [sourced.record for sourced in result.accepted] == [
        CustomerTier("strategic", 3.0),
        Location("urn:loc:dc1", "DC1", "site"),
        Sku("09501101530003", "Vaccine", 184.0, condition=ConditionRange(2.0, 8.0)),
    ]
    assert result.accepted[2].origin == Origin(str(path), 21, "sku", 1)


def test_invalid_toml_is_one_rejection_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", '[[sku]]\ngtin = "09501101530003"\ndescription = \n')
    result = read_file(path)
    assert len(result.rejected) == 1 and not result.accepted
    assert str(result.rejected[0]).startswith(f"{path}:3: not valid TOML: ")


def test_toml_tables_given_inline_still_get_their_index(tmp_path: Path) -> None:
    path = write(tmp_path, "inline.toml", 'customer_tier = [{ name = "basic", weight = 1.0 }, { name = "x" }]\n')
    result = read_file(path)
    assert result.rejected == [Rejection(Origin(str(path), 0, "customer_tier", 2), "weight: required")]
    assert str(result.rejected[0]) == f"{path}: [[customer_tier]] #2: weight: required"


# ---- the demo's files --------------------------------------------------------------------------


def test_the_demo_files_load_without_a_rejection_and_agree() -> None:
    from_toml = read_file(DEMO_TOML)
    from_csv = read_files(sorted(DEMO_CSV_DIR.glob("*.csv")))
    assert from_toml.rejected == [] and from_csv.rejected == []
    assert sorted(map(repr, (s.record for s in from_toml.accepted))) == sorted(
        map(repr, (s.record for s in from_csv.accepted))
    )
    skus = {s.record.gtin: s.record for s in from_toml.accepted if isinstance(s.record, Sku)}
    frozen = [sku for sku in skus.values() if sku.condition and sku.condition.temperature_max_c == -18.0]
    chilled = [sku for sku in skus.values() if sku.condition and sku.condition.temperature_max_c == 8.0]
    assert frozen and len(chilled) >= 3
    tiers = {s.record.name: s.record.weight for s in from_toml.accepted if isinstance(s.record, CustomerTier)}
    assert tiers == {"strategic": 3.0, "standard": 1.5, "basic": 1.0}


def test_every_gtin_the_simulated_site_produces_has_a_demo_sku() -> None:
    skus = {s.record.gtin for s in read_file(DEMO_TOML).accepted if isinstance(s.record, Sku)}
    scenario = load_scenario(REPO_ROOT / "deploy" / "demo" / "scanner-scenario.toml")
    scanned = {item.gtin for item in scenario.items if item.kind in ("serialized", "gtin", "digital_link")}
    # `tallyport-sim rfid` defaults: seed 1, at most 20 passages (the demo runs 12).
    passages = rfid_portal.plan(20, 1, gpi=False).passages
    tagged = {decode_epc(epc_hex).gtin for passage in passages for epc_hex in passage.sgtins}
    assert len(scanned) == 3 and len(tagged) == 20
    assert (scanned | tagged) - skus == set()
