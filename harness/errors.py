"""The one error type the command line turns into a single clear line and a non-zero exit."""


class HarnessError(Exception):
    """A problem the user can fix; the message names the fix."""
