"""soberan evaluate."""
