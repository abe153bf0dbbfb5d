"""The usual Celery-tutorial design, as the baseline the pipeline benchmark compares against.

One Celery task per job submits it upstream with a synchronous httpx client, then re-schedules
itself with ``countdown`` to poll; every step is its own SQLAlchemy transaction. It is written
plainly and fairly (one pooled HTTP client and one engine per worker process), not as a straw
man: it is what a careful team ships first.
"""
