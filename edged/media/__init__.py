"""Streams: sources, encoder choice and probe, the pipeline, recorder, retention, thermal."""
