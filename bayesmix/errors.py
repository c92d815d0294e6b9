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


def user_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn` that attributes a warning to the first caller
    outside bayesmix -- the user's line or notebook cell -- however deep inside the package
    it is raised (Python 3.12's skip_file_prefixes, for 3.11 too). Call it as the argument:
    ``warnings.warn(msg, stacklevel=user_stacklevel())``."""
    import os
    import sys
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1  # the function calling warnings.warn is level 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
