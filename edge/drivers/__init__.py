"""Device drivers of the edge agent: one subpackage per device kind, named as its gateway-config table.

What ships is the list of driver tables in `edge.config.GatewayConfig`; `edge.agent` starts each.
"""
