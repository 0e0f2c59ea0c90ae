"""The audit log: a hash chain of every event, appended by its own consumer (audit_log.py), read in story
order (audit_order.py), folded into past states (audit_history.py), verified (audit_verify.py)."""
