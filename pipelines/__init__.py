"""Jobs: ingest files (validate, normalise, mask personal data), incremental embedding, nightly themes."""
