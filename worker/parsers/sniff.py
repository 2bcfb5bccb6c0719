"""The delimiter of a CSV feed that does not name one, from its first lines."""

from __future__ import annotations

CANDIDATES = (",", ";", "\t", "|")


def delimiter(sample: str, quotechar: str = '"') -> str:
    """The candidate that splits the first lines into the most, equally many, fields."""
    lines = [line for line in sample.splitlines()[:10] if line.strip()]
    if not lines:
        return ","
    best, best_score = ",", 0
    for candidate in CANDIDATES:
        counts = [_count(line, candidate, quotechar) for line in lines]
        if counts[0] == 0:
            continue
        # Lines that agree with the first (a cut last line may not) make the score.
        score = counts[0] * sum(1 for c in counts if c == counts[0])
        if score > best_score:
            best, best_score = candidate, score
    return best


def _count(line: str, candidate: str, quotechar: str) -> int:
    n, quoted = 0, False
    for ch in line:
        if ch == quotechar:
            quoted = not quoted
        elif ch == candidate and not quoted:
            n += 1
    return n
