"""Process Service Center: one booking pool across the consortium."""
