"""What a command printed: its one error line."""

from __future__ import annotations


def error_line(err: str) -> str:
    """The one ``egotune: error:`` line of ``err``; there is no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("egotune: error:")]
    assert len(errors) == 1, err
    return errors[0]
