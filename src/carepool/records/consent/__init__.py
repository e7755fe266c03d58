"""A person's consent to share their records across the consortium's members."""
