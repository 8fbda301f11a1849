"""Make variables as typed values: checked once, with an error that names the variable."""

from common.errors import HarnessError


def whole_number(name: str, value: str | int | None, low: int, high: int | None = None) -> int | None:
    """A make variable that must be a whole number in range; None when not given."""
    if value is None or value == "":
        return None
    text = str(value)
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise HarnessError(f"{name}={value} must be a whole number {bounds}")
    return int(text)
