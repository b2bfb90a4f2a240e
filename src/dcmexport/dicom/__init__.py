"""Reading DICOM: files to datasets and frames, metadata, tags, series. Imports no other room."""
