"""Counts in the messages a user reads add up with the data they describe."""
from __future__ import annotations

import re

import pytest

from harness import results

MISSING = 3782
# a dataset's summary keeps the first 20 names of what is missing (harness/datasets.py)
SUMMARY = {"root": "/data", "missing": MISSING, "missing_names": [f"v_{i:04d}" for i in range(20)]}


def _shown_and_rest(message: str) -> tuple[int, int, int]:
    """(the count the message states, the names it shows, its "and N more")."""
    match = re.match(r"(\d+) listed item\(s\) \D+ under /data[^:]*: (.*?) \.\.\. and (\d+) more", message)
    assert match, message
    return int(match[1]), len(match[2].split(", ")), int(match[3])


@pytest.mark.parametrize("accept_missing", [False, True], ids=["failed", "noted"])
def test_names_shown_plus_the_rest_equal_the_count(accept_missing):
    result = results.Result("accuracy")
    results.data_findings(result, SUMMARY, accept_missing=accept_missing)
    (finding,) = result.findings
    count, shown, rest = _shown_and_rest(finding.message)
    assert count == MISSING and shown == results.NAMED and shown + rest == count


def test_accepted_items_are_left_out_of_the_count_and_the_names():
    result = results.Result("accuracy")
    results.data_findings(result, SUMMARY, accepted=["v_0000", "v_0001"])
    count, shown, rest = _shown_and_rest(result.findings[0].message)
    assert "v_0000" not in result.findings[0].message
    assert count == MISSING - 2 and shown + rest == count


def test_a_listing_of_all_its_names():
    assert results.listing(["a", "b"]) == "a, b"
    assert results.listing([f"n{i}" for i in range(12)]).endswith("n9 ... and 2 more")
