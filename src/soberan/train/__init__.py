"""soberan train."""
