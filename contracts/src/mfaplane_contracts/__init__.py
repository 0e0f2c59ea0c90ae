"""Message contracts shared by every service: event envelope, payloads, commands, topics."""
