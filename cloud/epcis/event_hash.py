"""The EPCIS Event Hash ID (GS1 CBV 2.0): a content-derived eventID such as `ni:///sha-256;…?ver=CBV2.0`.

Two parties that hold the same event, in any serialisation, compute the same ID; any change of
content changes it. The event is first turned into a *pre-hash string*: `key=value` pairs
concatenated without separators, in the canonical property order

    eventType, eventTime, eventTimeZoneOffset, epcList, parentID, inputEPCList, childEPCs,
    quantityList, childQuantityList, inputQuantityList, outputEPCList, outputQuantityList, action,
    transformationID, bizStep, disposition, persistentDisposition, readPoint, bizLocation,
    bizTransactionList, sourceList, destinationList, sensorElementList, ilmd, user extensions

with these normalisations (rule numbers of the algorithm's published description):
- absent or empty fields are left out; values are trimmed (4, 5);
- JSON numbers lose trailing zeros: 26.0 → "26" (6); strings are never reinterpreted as numbers;
- timestamps in UTC with "Z" and exactly millisecond precision, the 4th decimal rounded half-up (8, 9);
- list elements (epc, quantityElement, sensorReport, …) sorted by code point (10-12); a typed
  element (bizTransaction, source, destination) is written `type=…` then its value (13);
- CBV values expanded to Web URIs: bare `receiving`, `urn:epcglobal:cbv:bizstep:receiving` and
  `cbv:BizStep-receiving` all become `https://ref.gs1.org/cbv/BizStep-receiving` (14-16); sensor
  measurement types become `https://ref.gs1.org/voc/Temperature`;
- EPC URIs and Digital Link URIs become constrained canonical GS1 Digital Link URIs (17, 18; see
  `cloud.epcis.digital_link`);
- user extensions become `{namespace}localName=value`, nested ones after their parent's name, each
  level sorted, all of them after the standard fields (19, 20); CBV 2.0 also moves an extension inside
  readPoint/bizLocation to that trailing block, prefixed by the field's name (21).
`type`, `eventID`, `recordTime`, `errorDeclaration` and `certificationInfo` are not hashed.

The pre-hash is SHA-256 hashed and written as an RFC 6920 `ni` URI. Checked against the reference
implementation's published vectors (tests/cloud/epcis_vectors/). Not supported (a ValidationError says
so): user extensions inside a sensorElement, and event types other than the five of EPCIS 2.0.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud.epcis.digital_link import canonical_digital_link
from cloud.errors import ValidationError

__all__ = [
    "CBV_VERSION",
    "EVENT_TYPES",
    "WELL_KNOWN_NAMESPACES",
    "context_namespaces",
    "event_hash_id",
    "prehash_string",
]

CBV_VERSION = "CBV2.0"
EVENT_TYPES = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
CBV_WEB_URI = "https://ref.gs1.org/cbv/"
GS1_VOCABULARY_URI = "https://ref.gs1.org/voc/"
# Prefixes the standard EPCIS context defines; the document's @context may add its own.
WELL_KNOWN_NAMESPACES: Mapping[str, str] = {
    "gs1": GS1_VOCABULARY_URI,
    "cbv": CBV_WEB_URI,
    "epcis": "https://ref.gs1.org/epcis/",
    "cbvmda": "urn:epcglobal:cbv:mda",
}
# Old URN vocabulary → its CBV 2.0 Web URI term prefix (rule 14).
_CBV_URNS = {
    "urn:epcglobal:cbv:bizstep:": "BizStep-",
    "urn:epcglobal:cbv:disp:": "Disp-",
    "urn:epcglobal:cbv:btt:": "BTT-",
    "urn:epcglobal:cbv:sdt:": "SDT-",
    "urn:epcglobal:cbv:er:": "ER-",
}
_NOT_HASHED = frozenset(
    {"type", "eventID", "recordTime", "errorDeclaration", "certificationInfo", "@context", "rdfs:comment", "comment"}
)
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")
_SENSOR_METADATA_ORDER = (
    "time",
    "startTime",
    "endTime",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "bizRules",
)
_SENSOR_REPORT_ORDER = (
    "type",
    "exception",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "time",
    "microorganism",
    "chemicalSubstance",
    "value",
    "component",
    "stringValue",
    "booleanValue",
    "hexBinaryValue",
    "uriValue",
    "minValue",
    "maxValue",
    "meanValue",
    "sDev",
    "percRank",
    "percValue",
    "uom",
    "coordinateReferenceSystem",
)
_SENSOR_TIMES = frozenset({"time", "startTime", "endTime"})


def event_hash_id(event: Mapping[str, Any], namespaces: Mapping[str, str] = WELL_KNOWN_NAMESPACES) -> str:
    """The EPCIS Event Hash ID of a JSON-LD event (compacted, as in an EPCISDocument's eventList).

    `namespaces` maps the CURIE prefixes of user extension keys to their IRIs (`context_namespaces`).
    Raises ValidationError when the event is not hashable (what and where in the message).
    """
    digest = hashlib.sha256(prehash_string(event, namespaces).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={CBV_VERSION}"


def context_namespaces(context: object) -> dict[str, str]:
    """Prefix → IRI from a JSON-LD @context (a URL, a dict or a list of both), over the well-known ones."""
    found = dict(WELL_KNOWN_NAMESPACES)
    for entry in context if isinstance(context, list) else [context]:
        if isinstance(entry, Mapping):
            found.update({key: value for key, value in entry.items() if isinstance(value, str)})
    # The EPCIS context fixes gs1: to the GS1 Web Vocabulary, whatever a document says.
    found["gs1"] = GS1_VOCABULARY_URI
    return found


def prehash_string(event: Mapping[str, Any], namespaces: Mapping[str, str] = WELL_KNOWN_NAMESPACES) -> str:
    """The pre-hash string of a JSON-LD event (see the module docstring for the rules)."""
    event_type = event.get("type")
    if event_type not in EVENT_TYPES:
        raise ValidationError(f"type {event_type!r} is not an EPCIS event type ({', '.join(sorted(EVENT_TYPES))})")
    parts = [f"eventType={event_type}"]
    trailing: list[str] = []
    for key, render in _CANONICAL_ORDER:
        value = event.get(key)
        if value is None or value == "" or value == []:
            continue
        parts.append(render(key, value, namespaces, trailing))
    for key, value in event.items():
        if key in _KNOWN_FIELDS or key in _NOT_HASHED:
            continue
        if ":" not in key:
            raise ValidationError(f"{key!r} is neither an EPCIS event field nor a namespaced extension")
        trailing.extend(_extension(key, value, namespaces))
    return "".join(parts) + "".join(sorted(trailing))


# --- values -------------------------------------------------------------------------------------------


def _value(value: object, where: str) -> str:
    """A scalar as the pre-hash writes it: numbers normalised, URIs canonical, CURIEs expanded."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value, where)
    if not isinstance(value, str):
        raise ValidationError(f"{where}: expected a string or a number, got {type(value).__name__}")
    text = value.strip()
    for urn, term in _CBV_URNS.items():
        if text.startswith(urn):
            return CBV_WEB_URI + term + text[len(urn) :]
    for prefix in ("gs1", "cbv"):
        if text.startswith(prefix + ":") and not text.startswith(prefix + "://"):
            return WELL_KNOWN_NAMESPACES[prefix] + text[len(prefix) + 1 :]
    return canonical_digital_link(text) or text


def _number(value: float, where: str) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValidationError(f"{where}: {value} is not a finite number")
    return str(int(value)) if value.is_integer() else repr(value)


def _vocabulary(value: object, term_prefix: str, where: str) -> str:
    """A CBV value: a bare word becomes `https://ref.gs1.org/cbv/{term_prefix}{word}`."""
    if isinstance(value, str) and value.strip() and ":" not in value:
        return CBV_WEB_URI + term_prefix + value.strip()
    return _value(value, where)


def _timestamp(value: object, where: str) -> str:
    """UTC, 'Z', exactly three decimals; a 4th decimal of 5-9 rounds the 3rd up."""
    match = _TIMESTAMP.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(f"{where}: {value!r} is not an xsd:dateTimeStamp like 2025-01-31T12:00:00.000+01:00")
    whole, fraction, zone = match.groups()
    fraction = fraction or ""
    milliseconds = int(fraction[:3].ljust(3, "0"))
    if len(fraction) > 3 and fraction[3] >= "5":
        milliseconds += 1
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError as exc:
        raise ValidationError(f"{where}: {value!r} is not a valid date and time") from exc
    moment = moment.astimezone(UTC) + timedelta(milliseconds=milliseconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- fields -------------------------------------------------------------------------------------------

Render = Callable[[str, Any, Mapping[str, str], list[str]], str]


def _as_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _as_mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _plain(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    return f"{key}={_value(value, key)}"


def _event_time(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    return f"{key}={_timestamp(value, key)}"


def _offset(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    return f"{key}={str(value).strip()}"


def _epc_list(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    items = _as_list(value, key)
    return key + "".join(sorted(f"epc={_value(item, f'{key}[{index}]')}" for index, item in enumerate(items)))


def _quantity_list(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    elements = []
    for index, element in enumerate(_as_list(value, key)):
        where = f"{key}[{index}]"
        fields = _as_mapping(element, where)
        text = "quantityElement"
        for name in ("epcClass", "quantity", "uom"):
            if fields.get(name) not in (None, ""):
                text += f"{name}={_value(fields[name], f'{where}.{name}')}"
        elements.append(text)
    return key + "".join(sorted(elements))


def _cbv_field(term_prefix: str) -> Render:
    def render(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
        return f"{key}={_vocabulary(value, term_prefix, key)}"

    return render


def _persistent_disposition(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    fields = _as_mapping(value, key)
    text = key
    for name in ("set", "unset"):
        entries = _as_list(fields.get(name, []), f"{key}.{name}")
        text += "".join(sorted(f"{name}={_vocabulary(entry, 'Disp-', f'{key}.{name}')}" for entry in entries))
    return text


def _location(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    fields = _as_mapping(value, key)
    extensions = [text for name, item in fields.items() if name != "id" for text in _extension(name, item, namespaces)]
    if extensions:  # CBV 2.0 rule 21: after everything else, prefixed by the field's name
        trailing.append(key + "".join(sorted(extensions)))
    return f"{key}id={_value(fields.get('id', ''), f'{key}.id')}"


def _typed_list(member: str, term_prefix: str) -> Render:
    def render(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
        elements = []
        for index, element in enumerate(_as_list(value, key)):
            where = f"{key}[{index}]"
            fields = _as_mapping(element, where)
            text = ""
            if fields.get("type") not in (None, ""):
                text += f"type={_vocabulary(fields['type'], term_prefix, where + '.type')}"
            text += f"{member}={_value(fields.get(member, ''), f'{where}.{member}')}"
            elements.append(text)
        return key + "".join(sorted(elements))

    return render


def _sensor_element_list(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    # CBV 2.0 writes no "sensorElementList" wrapper, only each "sensorElement" (2.1 adds the wrapper).
    elements = []
    for index, element in enumerate(_as_list(value, key)):
        where = f"{key}[{index}]"
        fields = _as_mapping(element, where)
        unknown = set(fields) - {"sensorMetadata", "sensorReport"}
        if unknown:
            raise ValidationError(f"{where}: extensions inside a sensorElement are not supported ({sorted(unknown)})")
        text = "sensorElement"
        if "sensorMetadata" in fields:
            metadata = _sensor_part(fields["sensorMetadata"], _SENSOR_METADATA_ORDER, f"{where}.sensorMetadata")
            text += "sensorMetadata" + metadata if metadata else ""
        reports = _as_list(fields.get("sensorReport", []), f"{where}.sensorReport")
        text += "".join(
            sorted(
                "sensorReport" + _sensor_part(report, _SENSOR_REPORT_ORDER, f"{where}.sensorReport[{number}]")
                for number, report in enumerate(reports)
            )
        )
        elements.append(text)
    return "".join(sorted(elements))


def _sensor_part(value: object, order: tuple[str, ...], where: str) -> str:
    fields = _as_mapping(value, where)
    unknown = set(fields) - set(order)
    if unknown:
        raise ValidationError(f"{where}: extensions inside a sensorElement are not supported ({sorted(unknown)})")
    text = ""
    for name in order:
        item = fields.get(name)
        if item is None or item == "":
            continue
        if name in _SENSOR_TIMES:
            rendered = _timestamp(item, f"{where}.{name}")
        elif name == "type" and isinstance(item, str) and ":" not in item:
            rendered = GS1_VOCABULARY_URI + item.strip()  # bare measurement type: a GS1 Web Vocabulary term
        else:
            rendered = _value(item, f"{where}.{name}")
        text += f"{name}={rendered}"
    return text


def _ilmd(key: str, value: Any, namespaces: Mapping[str, str], trailing: list[str]) -> str:
    fields = _as_mapping(value, key)
    return key + "".join(sorted(text for name, item in fields.items() for text in _extension(name, item, namespaces)))


def _extension(key: str, value: object, namespaces: Mapping[str, str]) -> list[str]:
    """`{namespace}local=value`, or the name then its sorted children; a list repeats the name."""
    if key.startswith("@"):
        return []
    name = _expanded_name(key, namespaces)
    if isinstance(value, list):
        return [text for item in value for text in _extension(key, item, namespaces)]
    if isinstance(value, Mapping):
        children: Iterable[str] = (
            text for child, item in value.items() for text in _extension(child, item, namespaces)
        )
        return [name + "".join(sorted(children))]
    if value is None or (isinstance(value, str) and not value.strip()):
        return [name]
    return [f"{name}={_value(value, key)}"]


def _expanded_name(key: str, namespaces: Mapping[str, str]) -> str:
    prefix, separator, local = key.partition(":")
    if separator and prefix in namespaces:
        return "{" + namespaces[prefix] + "}" + local
    return key


_CANONICAL_ORDER: tuple[tuple[str, Render], ...] = (
    ("eventTime", _event_time),
    ("eventTimeZoneOffset", _offset),
    ("epcList", _epc_list),
    ("parentID", _plain),
    ("inputEPCList", _epc_list),
    ("childEPCs", _epc_list),
    ("quantityList", _quantity_list),
    ("childQuantityList", _quantity_list),
    ("inputQuantityList", _quantity_list),
    ("outputEPCList", _epc_list),
    ("outputQuantityList", _quantity_list),
    ("action", _plain),
    ("transformationID", _plain),
    ("bizStep", _cbv_field("BizStep-")),
    ("disposition", _cbv_field("Disp-")),
    ("persistentDisposition", _persistent_disposition),
    ("readPoint", _location),
    ("bizLocation", _location),
    ("bizTransactionList", _typed_list("bizTransaction", "BTT-")),
    ("sourceList", _typed_list("source", "SDT-")),
    ("destinationList", _typed_list("destination", "SDT-")),
    ("sensorElementList", _sensor_element_list),
    ("ilmd", _ilmd),
)
_KNOWN_FIELDS = frozenset(key for key, _ in _CANONICAL_ORDER)
