"""What is written per input or per series: stills, videos, sidecars, copies, volumes."""
