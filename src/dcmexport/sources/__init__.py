"""Where inputs come from: files, folders, archives, DICOMDIR sets (and, later, servers)."""
