def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (InstEval-sized data, Stan compiles)")
