"""EPCIS 2.0 interoperability: stored events exported as GS1 EPCIS 2.0 JSON-LD with CBV 2.0 vocabulary.

- `event_hash`: the CBV 2.0 EPCIS Event Hash ID (`ni:///sha-256;…?ver=CBV2.0`) of a JSON-LD event;
- `digital_link`: EPC URIs and Digital Link URIs → constrained canonical GS1 Digital Link (for the hash);
- `jsonld`: `events_pb2.Event` → EPCIS JSON-LD event (eventID = its hash), and the EPCISDocument;
- `service`: the gRPC `EpcisService.ExportEvents`; `client`: paging through it for the CLI.
"""

from cloud.epcis.event_hash import event_hash_id, prehash_string
from cloud.epcis.jsonld import epcis_document, event_to_jsonld

__all__ = ["epcis_document", "event_hash_id", "event_to_jsonld", "prehash_string"]
