"""The one exception type for user mistakes; the CLI turns it into one line and exit status 2."""


class UserError(Exception):
    """A problem with what the user gave us (file, flag, recipe, data), not a bug in edgepress.

    The message is one line that names the thing, the bad value and, where there are any, the
    valid choices.
    """


def choices(what: str, value, valid) -> UserError:
    """The standard 'unknown choice' error: what, the bad value, the valid choices."""
    return UserError(f"{what} {value!r} is not one of: {', '.join(sorted(map(str, valid)))}")


def one_of(what: str, value, valid):
    """`value` if it is one of `valid`, else the standard choices() error."""
    if value not in valid:
        raise choices(what, value, valid)
    return value


def first_line(e: BaseException, limit: int = 240) -> str:
    """An exception as the one line a user message quotes: its first line, or its type."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


# What zipfile raises on a damaged archive (found by tests/fuzz and atheris): bad headers or
# CRCs, a seek past the end, names that are not UTF-8 (ValueError), an unknown zip version or
# compression method (NotImplementedError), an encrypted member (RuntimeError), a corrupt or
# truncated deflate stream (zlib.error, EOFError).
def _archive_errors() -> tuple:
    import zipfile
    import zlib

    return (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error)


ARCHIVE_ERRORS = _archive_errors()
