"""The quantity sum in the pull mapper: its sources read from the row as numbers at once
when they are plain digits, converted first when not; the same sums either way."""

from __future__ import annotations

from tests.unit.recordhelp import csv_mapper


def test_a_sum_of_plain_digits_over_many_rows() -> None:
    """Sources of digits only are read as numbers at once (no blank, no sign, no map)."""
    m = csv_mapper({"rules": {"quantity": {"sum": ["a", "b", "c"], "locations": True}}},
                   ["external_id", "a", "b", "c"], positions=True)
    rows = [["X", "1", "20", "300"], ["Y", "0", "007", "2147483647"], ["Z", "4", "5", "6"]]
    out = m.map(rows, [2, 3, 4])
    assert out.text.splitlines() == [
        '2\tX\t321\t{"locations":{"a":1,"b":20,"c":300}}',
        '4\tZ\t15\t{"locations":{"a":4,"b":5,"c":6}}']
    assert [(r.position, r.reason) for r in out.rejects] == [
        (3, "inventoryQuantity: the sum 2147483654 is out of range")]


def test_a_sum_with_signs_and_spaces_is_converted_first() -> None:
    m = csv_mapper({"rules": {"quantity": {"sum": ["a", "b"]}}},
                   ["external_id", "a", "b"], positions=True)
    out = m.map([["X", "-1", " 5 "], ["Y", "2", "3"]], [2, 3])
    assert out.text == "2\tX\t4\n3\tY\t5\n"
