"""What the box offers guests beyond the bytes: clip facts, campaigns, check-in."""
