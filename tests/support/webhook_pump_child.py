"""A stand-alone deliver pump process for crash tests: ticks until it is killed.

Configured by the environment like the service (DATABASE_URL, WEBHOOK_*, LEASE_SECONDS) plus
PUMP_OWNER, the lease owner it claims as.
"""

from __future__ import annotations

import os
import time

from core.db import Database
from core.settings import Settings
from tests.support.webhook_pump import DeliverPump


def main() -> None:
    settings = Settings(_env_file=None)
    pump = DeliverPump(Database(settings.database_url), settings, owner=os.environ["PUMP_OWNER"])
    while True:
        pump.tick()
        time.sleep(0.05)  # the beat's cadence, squeezed


if __name__ == "__main__":
    main()
