"""The one error type the command line turns into a single clear line and a non-zero exit, and the way a
lower library's error is quoted in one."""

import re

SOURCE_LOCATION = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h|py):\d+\]\s*")  # Gloo's "[.../pair.cc:553] "
REASON_LIMIT = 300


class HarnessError(Exception):
    """A problem the user can fix; the message names the fix."""


def reason(error: BaseException | str, limit: int = REASON_LIMIT) -> str:
    """An error's first line, without a C++ source location, cut at a word (never mid-word) when long."""
    lines = str(error).strip().splitlines()
    text = SOURCE_LOCATION.sub("", lines[0] if lines else "")
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
