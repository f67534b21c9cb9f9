"""Device drivers of the edge agent: one subpackage per device kind (the registry is kept by the agent)."""
