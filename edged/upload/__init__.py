"""Upstream sync: the journal, the S3 adapter and the scheduler that never loses footage."""
