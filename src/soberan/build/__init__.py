"""soberan build."""
