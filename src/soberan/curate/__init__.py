"""soberan curate."""
