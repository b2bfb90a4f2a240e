"""The package version, in a module of its own so every room can read it without importing
the public API (which imports the rooms)."""

__version__ = "0.1.0"
