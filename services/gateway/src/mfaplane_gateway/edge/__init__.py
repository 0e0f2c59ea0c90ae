"""The gateway's edge: who is calling (API keys, admin and portal sessions, sign-in), how often they may
(rate limits), and its calls to identity and mfa (forwarding.py)."""
