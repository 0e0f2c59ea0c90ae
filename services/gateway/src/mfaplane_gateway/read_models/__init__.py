"""The read models: events projected into tables (projector.py, principals_projection.py), the queries
the lists run (principals_query.py), read-your-writes, and rebuilding them from the audit log (replay.py)."""
