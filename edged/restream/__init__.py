"""Restreaming: each stream's encoded packets pushed to RTMP(S) platforms as they are."""
