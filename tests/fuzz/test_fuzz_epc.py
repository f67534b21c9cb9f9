"""Fuzz the EPC decoder with mutations of 96-bit EPCs (bit flips, headers, partitions, lengths) and any text.

Property: ``decode_epc`` never raises; ``invalid`` exactly when it gives a non-empty reason (the portal
quarantines those reads); a valid GS1 scheme yields keys whose check digits hold and a canonical id on
id.gs1.org; a raw EPC is passed through with its raw URI; the echo of a hostile input stays bounded.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.drivers.scanner import gs1_check_digit
from edge.epc import EPC_HEX_LENGTH_MAX, decode_epc

fuzz = settings(settings.get_profile("tallyport-fuzz"))
# Seeds by header (30 SGTIN, 31 SSCC, 32 SGLN, 33 GRAI, 34 GIAI, E2 a factory EPC); the mutations below set
# headers and partition values so that every scheme's range checks are reached.
SEED_EPCS = [
    "3074257BF7194E4000001A85",
    "3114257BF7194E4000001A85",
    "31340242201D8840009EFDF7",
    "3234257BF4600000000003E7",
    "33342A9BB1E80D800000C01A",
    "3434257BF400000000003039",
    "E2801170200014CD9B5A08EC",
]


@st.composite
def mutated_epcs(draw: st.DrawFn) -> str:
    value = int(draw(st.sampled_from(SEED_EPCS)), 16)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        value ^= 1 << draw(st.integers(min_value=0, max_value=95))
    header = draw(st.sampled_from([None, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36]))
    if header is not None:
        value = (value & ((1 << 88) - 1)) | (header << 88)
    partition = draw(st.none() | st.integers(min_value=0, max_value=7))
    if partition is not None:
        value = (value & ~(0b111 << 82)) | (partition << 82)
    text = f"{value:024X}"
    text = draw(st.sampled_from([text, text.lower(), text[:-2], text + "00", text[:-1], text + "0" * 100]))
    return text


@fuzz
@given(epc=mutated_epcs() | st.text(max_size=200) | st.text(alphabet="0123456789abcdefABCDEF", max_size=140))
@example(epc="٣" * 24)  # other scripts' digits: not hex
@example(epc="30" + "F" * 22)
def test_fuzz_epc_decodes_or_is_invalid_with_a_reason(epc: str) -> None:
    decoded = decode_epc(epc)
    assert decoded.valid == (not decoded.error)
    assert len(decoded.epc_hex) <= EPC_HEX_LENGTH_MAX + 4
    if not decoded.valid:
        assert decoded.error.strip() and not decoded.canonical_id
        return
    if decoded.scheme == "raw":
        assert decoded.canonical_id == decoded.pure_identity_uri == f"urn:epc:raw:{len(epc) * 4}.x{epc.upper()}"
        return
    assert decoded.canonical_id.startswith("https://id.gs1.org/")
    assert decoded.tag_uri.startswith(f"urn:epc:tag:{decoded.scheme}:{decoded.filter_value}.")
    for key, length in ((decoded.gtin, 14), (decoded.sscc, 18), (decoded.gln, 13)):
        if key:
            assert len(key) == length and gs1_check_digit(key[:-1]) == int(key[-1])
