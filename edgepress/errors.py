"""The one exception type for user mistakes; the CLI turns it into one line and exit status 2."""


class UserError(Exception):
    """A problem with what the user gave us (file, flag, recipe, data), not a bug in edgepress.

    The message is one line that names the thing, the bad value and, where there are any, the
    valid choices.
    """


def choices(what: str, value, valid) -> UserError:
    """The standard 'unknown choice' error: what, the bad value, the valid choices."""
    return UserError(f"{what} {value!r} is not one of: {', '.join(sorted(map(str, valid)))}")
