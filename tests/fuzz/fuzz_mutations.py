"""Hypothesis strategies shared by the fuzzers: mutations of valid samples, so that inputs get past the first check.

Random bytes alone die in the first ``json.loads`` or ``tomllib.loads``; a fuzzer learns more when most of its
inputs are nearly right. Two families:

* byte mutations of a valid sample: bit flips, truncation, insertion of control bytes and of whole chunks,
  duplication of a slice (``mutated_bytes``);
* structural mutations of a parsed sample (a JSON document or a TOML table): a leaf replaced by a value of the
  wrong type, a huge or non-finite number, a deeply nested value; a key deleted or added (``mutated_tree``).
  ``to_json`` writes NaN/Infinity the way Python's json module reads them; ``to_toml`` writes any tree TOML can
  hold (non-finite floats as ``nan``/``inf``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

Tree = Any

CONTROL_BYTES = [b"\x00", b"\x03", b"\x1d", b"\x1e", b"\r", b"\n", b"\r\n", b"\x7f", b"\x9b", b"\xff", b"\xc3"]
HUGE_NUMBERS: list[Any] = [
    2**63,
    -(2**63) - 1,
    2**64 + 1,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    0,
    -1,
    0.5,
]
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\x1d",
    "\u202e",
    "é",
    "😀",
    "Z" * 300,
    "0" * 200,
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2024-05-27T14:32:01.123+0000",
    "2024-05-27T14:32:01",
    "NaN",
    "Infinity",
    "true",
    "null",
    "0x1F",
    "ＺＺ",
    "٣",
]


def _deep(depth: int, leaf: Tree) -> Tree:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


odd_leaves: st.SearchStrategy[Tree] = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(ODD_TEXT),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.just([]),
    st.just({}),
    st.integers(min_value=2, max_value=60).map(lambda depth: _deep(depth, 1)),
)


@st.composite
def mutated_bytes(draw: st.DrawFn, sample: bytes, rounds_max: int = 4) -> bytes:
    """``sample`` after a few byte-level mutations (possibly none: the valid sample is an input too)."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(min_value=0, max_value=rounds_max))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert_control", "insert_bytes", "delete", "duplicate"]))
        position = draw(st.integers(min_value=0, max_value=len(data)))
        if kind == "flip" and data:
            index = min(position, len(data) - 1)
            data[index] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert_control":
            data[position:position] = draw(st.sampled_from(CONTROL_BYTES))
        elif kind == "insert_bytes":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=4))]
        elif kind == "duplicate":
            end = position + draw(st.integers(min_value=1, max_value=16))
            data[position:position] = data[position:end]
    return bytes(data)


def _paths(tree: Tree, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in ``tree`` (the root excluded), parents before children."""
    paths: list[tuple[Any, ...]] = []
    children: list[tuple[Any, Tree]] = []
    if isinstance(tree, dict):
        children = list(tree.items())
    elif isinstance(tree, list):
        children = list(enumerate(tree))
    for key, child in children:
        paths.append((*prefix, key))
        paths.extend(_paths(child, (*prefix, key)))
    return paths


def _copy(tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {key: _copy(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_copy(value) for value in tree]
    return tree


def _parent(tree: Tree, path: tuple[Any, ...]) -> Tree:
    for key in path[:-1]:
        tree = tree[key]
    return tree


@st.composite
def mutated_tree(
    draw: st.DrawFn, sample: Tree, leaves: st.SearchStrategy[Tree] = odd_leaves, rounds_max: int = 3
) -> Tree:
    """A copy of the JSON/TOML tree ``sample`` with a few structural mutations."""
    tree = _copy(sample)
    for _ in range(draw(st.integers(min_value=0, max_value=rounds_max))):
        paths = _paths(tree)
        kind = draw(st.sampled_from(["replace", "delete", "add_key", "wrap", "retype_container"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(tree, path)
        key = path[-1]
        if kind == "replace":
            parent[key] = draw(leaves)
        elif kind == "delete":
            del parent[key]
        elif kind == "add_key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "type", "data", "pin", "", "x" * 50]))] = draw(leaves)
        elif kind == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}, str(parent[key])]))
        elif kind == "retype_container":
            value = parent[key]
            if isinstance(value, dict):
                parent[key] = list(value.values())
            elif isinstance(value, list):
                parent[key] = {str(index): item for index, item in enumerate(value)}
    return tree


def to_json(tree: Tree) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare words (which devices do send)."""
    return json.dumps(tree, allow_nan=True).encode()


def _toml_key(key: object) -> str:
    return json.dumps(str(key), ensure_ascii=True)


def _toml_value(value: Tree) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if value is None:
        return '""'  # TOML has no null; the nearest wrong value
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def to_toml(tree: dict[str, Tree]) -> str:
    """A TOML document for ``tree``: every top-level key as a line, tables inline (TOML allows any depth)."""
    return "".join(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in tree.items())
