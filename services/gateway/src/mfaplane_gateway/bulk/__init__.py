"""Actions on many users or systems: bulk MFA operations (bulk.py), CSV import (user_import.py), login
names (login_names.py), each item applied on its own (piecewise.py)."""
