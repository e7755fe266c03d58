"""carepool: an open-source hospital middle platform for a medical consortium."""

__version__ = "0.1.0"
