import os
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (InstEval-sized data, Stan compiles)")
    config.addinivalue_line("markers", "cmdstan: runs a real CmdStan (BAYESMIX_TEST_CMDSTAN); "
                                       "skipped when none is set")


@pytest.fixture(scope="module")
def cmdstan_home():
    """The CmdStan the `cmdstan` tests use: $BAYESMIX_TEST_CMDSTAN (.ci/run builds one
    from ../shared/cmdstan), set for cmdstanpy for this module only.

    Deliberately not $CMDSTAN: with CMDSTAN set, engine="auto" would pick CmdStan for
    every other test too (a ~60 s make per program). CMDSTAN is restored afterwards."""
    path = os.environ.get("BAYESMIX_TEST_CMDSTAN")
    if not path:
        pytest.skip("no CmdStan to test against: set BAYESMIX_TEST_CMDSTAN to a built CmdStan "
                    "(.ci/run builds one when ../shared/cmdstan exists)")
    home = Path(path).resolve()
    if not ((home / "makefile").exists() and (home / "bin" / "stanc").exists()
            and (home / "src" / "cmdstan" / "main.o").exists()):
        pytest.skip(f"BAYESMIX_TEST_CMDSTAN={path} is not a built CmdStan "
                    "(makefile, bin/stanc or src/cmdstan/main.o missing)")
    import cmdstanpy
    saved = os.environ.get("CMDSTAN")
    cmdstanpy.set_cmdstan_path(str(home))
    try:
        yield home
    finally:
        if saved is None:
            os.environ.pop("CMDSTAN", None)
        else:
            os.environ["CMDSTAN"] = saved
