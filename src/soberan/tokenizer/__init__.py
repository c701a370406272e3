"""soberan tokenizer."""
