"""The classify worker (``facegrid worker``): Redis stream → checks → gallery match → store."""
