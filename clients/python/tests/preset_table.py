"""Prints the companion's preset table as JSON (tests/Companion.Tests/PresetTableTests.cs holds it equal to the engine's).

    python3 tests/preset_table.py
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emalab import rules  # noqa: E402


def main():
    table = rules.table()
    # NaN is not JSON: a source default of "none" is written as null, as the engine writes it.
    for entry in table.values():
        entry["sourceDefaults"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in entry["sourceDefaults"].items()}
    print(json.dumps(table, sort_keys=True))


if __name__ == "__main__":
    main()
