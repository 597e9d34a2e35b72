"""The clip cache: assets on disk, prepared for fast start, replicated from upstream."""
