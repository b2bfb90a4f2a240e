"""The batch engine: executor, guarded unit of work, resume state, the run."""
