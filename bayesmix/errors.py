"""Exception types. Every user-facing failure is one of these, with a message
that names the culprit and, where there is a choice, the valid options."""


class BayesmixError(Exception):
    """Base class of all bayesmix errors."""


class FormulaError(BayesmixError, ValueError):
    """The formula string is malformed or uses unsupported syntax."""


class DataError(BayesmixError, ValueError):
    """The data cannot be used with the formula (missing column, bad type, ...)."""


class FamilyError(BayesmixError, ValueError):
    """Unknown family, or a link the family cannot take."""


class StanError(BayesmixError, RuntimeError):
    """Stan (compiler or sampler/optimizer) failed; the message is Stan's own."""


class ToolchainError(BayesmixError, RuntimeError):
    """The Stan toolchain (stanc, C++ compiler, headers) is missing or broken."""
