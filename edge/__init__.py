"""Tallyport edge agent: reads a gateway's devices, turns reads into events, keeps them durable, streams them up.

It meets the cloud only through the `tallyport.v1` contract. Run it from Python with

    await run_agent(load_config(Path("gateway.toml")), stop=stop_event)

or from the shell with `tallyport-edge run --config gateway.toml` (see `tallyport-edge --help`).
"""

from edge.agent import run_agent
from edge.config import GatewayConfig, load_config
from edge.errors import ConfigError, EdgeError

__all__ = ["ConfigError", "EdgeError", "GatewayConfig", "load_config", "run_agent"]
