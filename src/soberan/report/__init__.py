"""soberan report."""
