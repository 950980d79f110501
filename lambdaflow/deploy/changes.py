"""What deploy / destroy did to each resource, and how that is printed.

Every ``ensure_*`` / ``delete_*`` function returns one :class:`Change` per resource; the
command prints them in order, one line each, then a summary such as
``2 created, 1 updated, 4 unchanged``. A second ``deploy`` with the same settings reports
every resource ``unchanged``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
DELETED = "deleted"
ABSENT = "absent"  # destroy: nothing to delete
KEPT = "kept"  # destroy: not ours, or --keep-bucket
SKIPPED = "skipped"  # deploy: could not be done yet (e.g. no image pushed)
FAILED = "failed"  # destroy: the step raised; the error is in the details


@dataclass
class Change:
    kind: str  # "bucket", "role", "repository", "log group", "function", "table", ...
    name: str
    action: str
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.kind:<11} {self.name:<40} {self.action}"
        if self.details:
            text += f" ({'; '.join(self.details)})"
        return text


def summary(changes: list[Change]) -> str:
    counts = Counter(change.action for change in changes)
    order = (CREATED, UPDATED, UNCHANGED, DELETED, ABSENT, KEPT, SKIPPED, FAILED)
    return ", ".join(f"{counts[a]} {a}" for a in order if counts[a]) or "nothing to do"
