"""soberan serve."""
