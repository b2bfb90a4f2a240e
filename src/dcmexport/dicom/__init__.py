"""Reading DICOM: files to datasets and frames (`decoding`), metadata (`metadata`), the one tag
grammar (`tags`), the one series grouping (`series`), value helpers (`values`).

Imports pydicom, NumPy and the shared top-level modules only: no other room.
"""
