"""Runs every test_*.py of this folder in one process and writes each test's outcome as JSON (for dotnet test).

    python3 tests/run_tests.py results.json
"""
import json
import os
import sys
import traceback
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
sys.path.insert(0, here)


class Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _name(self, test):
        return test.id()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes[self._name(test)] = {"outcome": "passed", "details": ""}

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[self._name(test)] = {"outcome": "failed", "details": self._exc_info_to_string(err, test)}

    def addError(self, test, err):
        super().addError(test, err)
        self.outcomes[self._name(test)] = {"outcome": "error", "details": self._exc_info_to_string(err, test)}

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes[self._name(test)] = {"outcome": "skipped", "details": reason}


def main(path):
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
    runner = unittest.TextTestRunner(resultclass=Recorder, verbosity=2, stream=sys.stdout)
    try:
        result = runner.run(suite)
        outcomes = result.outcomes
        for test, err in result.errors:  # a module that failed to import is an error without a test of its own
            outcomes.setdefault(test.id(), {"outcome": "error", "details": err})
    except Exception:
        outcomes = {"(suite)": {"outcome": "error", "details": traceback.format_exc()}}
    with open(path, "w") as f:
        json.dump(outcomes, f, indent=1)
    return 0 if all(o["outcome"] == "passed" for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
