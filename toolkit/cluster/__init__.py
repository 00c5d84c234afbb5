"""Ray clusters: connecting to one (or starting an embedded local one) and its auth."""
