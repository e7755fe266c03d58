"""Deterministic generators of hostile feeds: inputs nobody here wrote the way a sender would,
one function per case, each returning the bytes as they would arrive."""
