"""Few-shot datasets, episodes and prompts generated from masks."""
