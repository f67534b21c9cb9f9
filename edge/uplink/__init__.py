"""The gateway's uplink to the cloud: one bidirectional gRPC stream with acknowledged delivery."""

from edge.backoff import Backoff
from edge.uplink.stream import Uplink, UplinkSettings

__all__ = ["Backoff", "Uplink", "UplinkSettings"]
