"""Prometheus metrics shared by every service, labelled by what they count."""

from prometheus_client import Counter, Gauge

EVENTS_APPENDED = Counter("mfaplane_events_appended_total", "Events appended to this service's event store")
EVENTS_PUBLISHED = Counter("mfaplane_events_published_total", "Events the outbox relay published", ["topic"])
OUTBOX_BACKLOG = Gauge("mfaplane_outbox_backlog", "Events stored but not yet published")
# `group`: the Kafka consumer group (a service may consume in more than one: consumer.py).
EVENTS_CONSUMED = Counter("mfaplane_events_consumed_total", "Events handled by a consumer",
                          ["group", "topic", "outcome"])
CONSUMER_LAG = Gauge("mfaplane_consumer_lag", "Messages of the partition beyond the group's committed offset",
                     ["group", "topic", "partition"])
HANDLER_ERRORS = Counter("mfaplane_handler_errors_total", "Handler attempts that raised", ["topic"])
DEAD_LETTERS = Counter("mfaplane_dead_letters_total", "Messages parked on a dead-letter topic", ["topic"])
EVENTS_HELD = Gauge("mfaplane_events_held",
                    "Messages held until a consumer that knows their schema version handles them (consumer.py)",
                    ["group", "topic"])
EVENTS_REJECTED = Counter("mfaplane_events_rejected_total",
                          "Events refused before handling: unsigned, badly signed, or not the topic owner's",
                          ["topic", "reason"])
