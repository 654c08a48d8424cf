"""Where scored windows go: Redis (latest score, trend, ward ranking, quality, alerts state)."""
