"""The errors that mean bad input (exit code 2), in a module light enough for every command."""


class SpecError(ValueError):
    """An invalid study spec; ``str(error)`` lists one ``field: problem`` per line."""


class PreflightError(SpecError):
    """The study cannot run as specified; ``str(error)`` is ``field: cause`` per line."""
