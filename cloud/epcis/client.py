"""The client side of EpcisService: every page of an export merged into one EPCISDocument.

`tallyport-cloud epcis-export` uses it. The server answers newest first, page by page; the merged
document lists the events oldest first, as an EPCIS capture document usually does. The envelope
(@context, creationDate) is the first page's. More than `events_max` matching events is an error
(`ExportTooLargeError`), never a silently shortened document.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tallyport.v1 import epcis_pb2

from cloud.errors import CloudError

__all__ = ["ExportError", "ExportTooLargeError", "fetch_document", "write_document"]


class ExportError(CloudError):
    """The export cannot be completed as asked."""


class ExportTooLargeError(ExportError):
    """More events match than the caller allowed; narrow the filters or raise the maximum."""


async def fetch_document(
    stub: Any, request: epcis_pb2.ExportEventsRequest, *, events_max: int, timeout_s: float
) -> dict[str, Any]:
    """Page through ExportEvents (page by page, each call bounded by `timeout_s`) into one document."""
    request = epcis_pb2.ExportEventsRequest.FromString(request.SerializeToString())  # the caller's stays as given
    envelope: dict[str, Any] | None = None
    newest_first: list[Any] = []
    for page_number in itertools.count(1):
        reply: epcis_pb2.ExportEventsResponse = await stub.ExportEvents(request, timeout=timeout_s)
        try:
            page = json.loads(reply.document_json)
            events = page["epcisBody"]["eventList"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"the server's page {page_number} is not an EPCISDocument: {exc!r}") from exc
        if envelope is None:
            envelope = page
        newest_first.extend(events)
        if len(newest_first) > events_max:
            raise ExportTooLargeError(
                f"more than {events_max} events match; narrow the export (e.g. --since/--until) or raise --max-events"
            )
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    assert envelope is not None  # the loop ran at least once
    envelope["epcisBody"]["eventList"] = newest_first[::-1]
    return envelope


def write_document(document: dict[str, Any], path: Path) -> None:
    """Write `document` to `path` whole or not at all (a temporary file beside it, then a rename)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(descriptor, 0o666 & ~umask)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
