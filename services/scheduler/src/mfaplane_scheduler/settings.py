from mfaplane_eventing.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    database_schema: str = "scheduler"
    # Seconds before the deadline at which a reminder is sent; the seed's single 24-hour reminder.
    reminder_offsets_seconds: list[int] = [24 * 3600]
    tick_seconds: float = 1.0
    fire_batch_size: int = 500
