"""Where outputs go: atomic writes inside OUT, temporary and state folders."""
