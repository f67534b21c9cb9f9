"""Turn a decoded barcode scan into an EPCIS-aligned event at its read point.

A scan that identifies one instance (GTIN + serial, or an SSCC) becomes an ObjectEvent with that
object; a GTIN without serial becomes a quantity: the AI (37) count, else one trade item, or the
AI (310n) net weight in KGM for a variable-measure item. The read point's config says what the scan
means in business terms (biz_step, action, disposition, biz_location).
"""

from __future__ import annotations

from datetime import datetime

from tallyport.v1 import events_pb2

from edge.config import ReadPointConfig
from edge.drivers.scanner import ScanDecoded

DRIVER_KEY = "scanner"


def offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    assert offset is not None, "event times are timezone-aware"
    return int(offset.total_seconds() // 60)


def scan_to_event(
    scan: ScanDecoded,
    *,
    gateway_id: str,
    device_id: str,
    read_point: ReadPointConfig,
    read_time: datetime,
) -> events_pb2.Event:
    """The event a scan means at `read_point`; `read_time` is local to the site (aware)."""
    event = events_pb2.Event(
        gateway_id=gateway_id,
        type=events_pb2.EVENT_TYPE_OBJECT,
        event_time_offset_minutes=offset_minutes(read_time),
        read_point=events_pb2.ReadPoint(id=read_point.id, device_id=device_id),
        biz_location=read_point.biz_location,
        action=events_pb2.Action.Value(f"ACTION_{read_point.action}"),
        biz_step=events_pb2.BizStep.Value(f"BIZ_STEP_{read_point.biz_step.upper()}"),
        event_class=events_pb2.EVENT_CLASS_MOVEMENT,
        lineage=events_pb2.Lineage(
            driver=DRIVER_KEY,
            raw_sha256=scan.raw_sha256,
            symbology=scan.symbology,
            rules_applied=["scanner.decode", f"read_point:{read_point.name}"],
        ),
    )
    event.event_time.FromDatetime(read_time)
    if read_point.disposition:
        event.disposition = events_pb2.Disposition.Value(f"DISPOSITION_{read_point.disposition.upper()}")
    if scan.object_id:
        event.objects.append(
            events_pb2.IdentifiedObject(
                id=scan.object_id,
                gtin=scan.gtin,
                serial=scan.serial,
                sscc=scan.sscc,
                batch=scan.batch,
                expiry_date=scan.expiry_date,
            )
        )
    else:
        quantity = events_pb2.QuantityElement(
            gtin=scan.gtin,
            batch=scan.batch,
            expiry_date=scan.expiry_date,
            best_before_date=scan.best_before_date,
        )
        if scan.count is not None:
            quantity.quantity = scan.count
        elif scan.net_weight_kg is not None:
            quantity.quantity = float(scan.net_weight_kg)
            quantity.uom = "KGM"
        else:
            quantity.quantity = 1
        event.quantities.append(quantity)
    return event
