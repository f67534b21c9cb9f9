"""The Tallyport API contract (generated from protos/tallyport/*/*.proto)."""
