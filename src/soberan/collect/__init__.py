"""soberan collect."""
