from pathlib import Path

from mfaplane_chassis.service import ServiceSpec, main
from mfaplane_contracts.topics import IDENTITY_EVENTS, MFA_EVENTS
from mfaplane_scheduler import firing
from mfaplane_scheduler.settings import SchedulerSettings
from mfaplane_scheduler.timer_updates import batch_handler
from mfaplane_scheduler.timers import HANDLES

SPEC = ServiceSpec(
    name="scheduler",
    settings_type=SchedulerSettings,
    migrations=Path(__file__).parent / "migrations",
    consumes=(MFA_EVENTS, IDENTITY_EVENTS),
    batch_handler=lambda runtime: batch_handler(runtime.settings.reminder_offsets_seconds),
    handles=HANDLES,
    background=lambda runtime: [firing.run(runtime)],
)

if __name__ == "__main__":
    main(SPEC)
