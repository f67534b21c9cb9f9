"""Exceptions: rules find what is wrong, where, and what it costs; people acknowledge, resolve, shelve.

    rules/        one module per rule, pure: a read model in, conditions out
    lifecycle.py  the ISA-18.2 state machine of one exception (pure)
    priority.py   the priority score: money at stake x service exposure x severity
    config.py     the rules file and the cloud config's [exceptions] table
    store.py      the tables, through the portable SQL layer (one open exception per rule x subject)
    engine.py     runs the rules on ingest commits and on a clock, writes, publishes
    hub.py        fan-out of changes to subscribers, bounded per subscriber
    service.py    the gRPC ExceptionService
    kpis.py       raised/resolved counts, resolution time, recurrence rate for a window
    cli.py        `tallyport-cloud exceptions list|show|ack|resolve|shelve|watch`

Rules files: deploy/demo/exception-rules.toml (the demo), rules.sample.toml here (production values).

This file imports nothing, so that `cloud.config` can use `cloud.exceptions.config` cheaply.
"""
