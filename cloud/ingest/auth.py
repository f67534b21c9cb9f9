"""Who may speak for a gateway on the uplink: per-gateway bearer tokens, optional.

With `[ingest] gateway_tokens` (or `gateway_tokens_file`) configured, every stream must carry
`authorization: Bearer <token>` call metadata. The cloud keeps only the SHA-256 of each token,
so the tokens file is not itself a secret a gateway could be impersonated with. A stream is
checked twice:
- before anything is read: no token, a malformed header or an unknown token ends it with
  UNAUTHENTICATED, so unauthenticated clients never hold a stream slot or reach the store;
- at the Hello: a token that belongs to another gateway ends it with PERMISSION_DENIED, before
  the registry lets it supersede the real gateway's stream.
Without tokens configured every stream is accepted, as before (a trusted network, the demo).
Tokens travel in clear over an insecure channel: production runs the uplink over TLS, better
mutual TLS with a client certificate per gateway (not built here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc

from cloud.config import token_digest

__all__ = ["AUTHORIZATION_KEY", "AuthFailure", "GatewayAuthenticator", "check_claim"]

AUTHORIZATION_KEY = "authorization"
_BEARER_PREFIX = "bearer "
# A header longer than this is not one of our tokens; do not hash megabytes for it.
TOKEN_LENGTH_MAX = 1024


class AuthFailure(Exception):
    """Why a stream is refused: the status code and the message the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GatewayAuthenticator:
    """Checks a stream's bearer token against the configured digests (gateway_id -> SHA-256 hex)."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._gateway_by_digest = {digest: gateway_id for gateway_id, digest in digests.items()}

    @property
    def enabled(self) -> bool:
        """Whether any token is configured; without one every stream is accepted."""
        return bool(self._gateway_by_digest)

    def gateway_of(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        """The gateway_id the stream's token belongs to (None when auth is off); raise AuthFailure."""
        if not self.enabled:
            return None
        values = [value for key, value in metadata if key.lower() == AUTHORIZATION_KEY]
        if not values:
            raise AuthFailure(
                grpc.StatusCode.UNAUTHENTICATED,
                "this cloud requires a gateway token: send 'authorization: Bearer <token>' metadata "
                "(edge config [uplink] token or token_file)",
            )
        value = values[0]
        if (
            len(values) > 1
            or not isinstance(value, str)
            or len(value) > TOKEN_LENGTH_MAX
            or not value.lower().startswith(_BEARER_PREFIX)
        ):
            raise AuthFailure(
                grpc.StatusCode.UNAUTHENTICATED,
                "the authorization metadata must be exactly one 'Bearer <token>' value",
            )
        token = value[len(_BEARER_PREFIX) :].strip()
        # A dict lookup by digest: the digest of a guess says nothing about the stored ones.
        gateway_id = self._gateway_by_digest.get(token_digest(token)) if token else None
        if gateway_id is None:
            raise AuthFailure(grpc.StatusCode.UNAUTHENTICATED, "the gateway token is not known to this cloud")
        return gateway_id


def check_claim(token_gateway_id: str | None, hello_gateway_id: str) -> None:
    """Raise AuthFailure(PERMISSION_DENIED) when the token belongs to another gateway than the Hello's."""
    if token_gateway_id is not None and token_gateway_id != hello_gateway_id:
        raise AuthFailure(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the token presented belongs to gateway {token_gateway_id!r}; it may not speak for {hello_gateway_id!r}",
        )
