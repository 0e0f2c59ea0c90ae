"""The service chassis: how each service process starts and serves HTTP (service.py), and what every
HTTP route of the services shares: problem+json errors, signed calls between services, request limits
and headers, routes declared from the contract's endpoints. The event-sourcing core it runs on is
mfaplane_eventing."""
