"""Reconciliation: cycle counts and ERP/WMS snapshots against the event-derived on-hand, drifts and KPIs.

One job per module: `models` (what is compared and found), `files` (CSV import), `erp_pull`
(HTTP pull with a cached last good snapshot), `compare` (pure comparison with ABC tolerances),
`repository` (the tables), `reconciler` (import, pull, compare, record), `kpis` (accuracy,
freshness, exceptions, data quality), `messages` + `paging` + `service` (the gRPC API),
`cli` (`tallyport-cloud reconcile` and `kpis`), `config` (`[reconciliation]` of cloud.toml).

This package's `__init__` stays light: `cloud.config` imports `config` from here.
"""
