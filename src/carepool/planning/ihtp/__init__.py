"""planning/ihtp."""
