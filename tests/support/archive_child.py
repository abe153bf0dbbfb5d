"""A worker-like process that runs the archive pump once: the SIGKILL test kills it mid-copy.

Usage: python -m tests.support.archive_child SETTINGS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys

from core.db import Database
from core.settings import Settings
from core.storage import open_storage
from worker.archive import ArchiveContext, make_download_client, run_archive_pump


async def main(settings: Settings) -> None:
    db = Database(settings.database_url)
    ctx = ArchiveContext(
        db=db,
        settings=settings,
        store=open_storage(settings),
        http=make_download_client(settings),
        owner="child:1",
    )
    await run_archive_pump(ctx)


if __name__ == "__main__":
    asyncio.run(main(Settings(_env_file=None, **json.loads(sys.argv[1]))))  # type: ignore[call-arg]
