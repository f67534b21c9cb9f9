"""EPC decoding for RFID reads: what a tag's EPC bank means in GS1 terms (pure, no I/O).

`decode_epc(hex)` → `DecodedEpc` with the scheme (SGTIN/SSCC/SGLN/GRAI/GIAI-96, ``raw`` or ``invalid``),
the EPC URIs, the GS1 keys and the canonical GS1 Digital Link id that events carry. It never raises.
"""

from edge.epc.decode import EPC_HEX_LENGTH_MAX, DecodedEpc, EpcScheme, decode_epc

__all__ = ["EPC_HEX_LENGTH_MAX", "DecodedEpc", "EpcScheme", "decode_epc"]
