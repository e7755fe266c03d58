"""Typed IHTC-2024 file errors, so callers can tell a malformed file from an infeasible plan."""

from __future__ import annotations

from collections.abc import Sequence


class IhtpFormatError(ValueError):
    """An IHTC-2024 instance or solution that cannot be evaluated (wrong shape, unknown id, ...).

    `path` names the entry and field (``patients[12] (id=p12).surgery_due_day``; empty for the
    whole document), `reason` says what is wrong, and ``str(error)`` is ``"{path}: {reason}"``.
    When several problems were found, `problems` lists every ``(path, reason)`` pair and the
    message mentions how many more there are.
    """

    def __init__(self, path: str, reason: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        self.path = path
        self.reason = reason
        self.problems: tuple[tuple[str, str], ...] = ((path, reason), *more)
        message = f"{path}: {reason}" if path else reason
        if more:
            message += f" (and {len(more)} more problem{'s' if len(more) > 1 else ''})"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable (pytest-xdist, multiprocessing) despite the custom signature.
        return (_rebuild, (self.problems,))


def _rebuild(problems: tuple[tuple[str, str], ...]) -> IhtpFormatError:
    (path, reason), *more = problems
    return IhtpFormatError(path, reason, more=more)
