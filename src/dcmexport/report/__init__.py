"""The HTML report of an export (reads the manifest and the store, never the renderer)."""
