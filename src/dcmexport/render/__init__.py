"""Pixels to pictures: pure pixel functions, windowing, the display pipeline, overlays."""
