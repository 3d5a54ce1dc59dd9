"""The ingest pipeline: verify → store (the web, :mod:`receiver.web.callbacks`) → apply → outbox
(:mod:`receiver.ingest.applier`, in ``relay worker``)."""
