"""soberan."""
