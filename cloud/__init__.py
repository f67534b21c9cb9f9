"""Tallyport cloud aggregator: ingests gateway event streams, keeps positions and on-hand, answers queries.

It meets the edge only through the `tallyport.v1` contract. Start it from Python with

    async with CloudServer(load_config(Path("cloud.toml"))) as server:
        ...  # server.target is HOST:PORT for clients

or from the shell with `tallyport-cloud serve` (see `tallyport-cloud --help`).
"""

from cloud.config import CloudConfig, load_config
from cloud.errors import CloudError
from cloud.server import CloudServer, serve

__all__ = ["CloudConfig", "CloudError", "CloudServer", "load_config", "serve"]
