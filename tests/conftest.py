"Shared pytest settings: the `slow` marker, and quiet fastai progress bars."
import warnings
import pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; skipped by the default suite (`bash .ci/slow` runs them)")
    config.addinivalue_line("markers", "docs: checks the built site in _site/; skipped without a current build (`bash .ci/docs` runs them)")
    warnings.filterwarnings("ignore", category=FutureWarning)
