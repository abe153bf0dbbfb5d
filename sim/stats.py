"""Counters a test reads to prove what reached the upstream (and what it was charged for)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SimStats:
    """Everything counted since start or the last reset.

    ``submits_by_prompt`` counts tasks created, keyed by prompt (Midjourney follow-ups by
    ``"<action> <source id> <arg>"``): a count above 1 means the same thing was paid for twice.
    """

    requests: int = 0
    submit_requests: int = 0
    tasks_created: int = 0
    submits_by_prompt: Counter[str] = field(default_factory=Counter)
    submits_by_model: Counter[str] = field(default_factory=Counter)
    submits_by_path: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    polls_by_path: Counter[str] = field(default_factory=Counter)
    polls_unknown_id: int = 0
    rate_limited: int = 0
    errors_5xx: int = 0
    unauthorized: int = 0
    forbidden: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    files_served: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view, with ``duplicates`` listing every key submitted more than once."""
        return {
            "requests": self.requests,
            "submit_requests": self.submit_requests,
            "tasks_created": self.tasks_created,
            "submits_by_prompt": dict(self.submits_by_prompt),
            "submits_by_model": dict(self.submits_by_model),
            "submits_by_path": dict(self.submits_by_path),
            "duplicates": {k: n for k, n in self.submits_by_prompt.items() if n > 1},
            "refusals": dict(self.refusals),
            "polls": self.polls,
            "polls_by_path": dict(self.polls_by_path),
            "polls_unknown_id": self.polls_unknown_id,
            "rate_limited": self.rate_limited,
            "errors_5xx": self.errors_5xx,
            "unauthorized": self.unauthorized,
            "forbidden": self.forbidden,
            "faults": dict(self.faults),
            "faults_injected": sum(self.faults.values()),
            "files_served": self.files_served,
        }
