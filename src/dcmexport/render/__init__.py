"""Pixels to pictures: pure pixel functions (`pixels`), windowing, the display pipeline
(`pipeline`), and rendering one frame (`frame`). Imports only the `dicom` room."""
