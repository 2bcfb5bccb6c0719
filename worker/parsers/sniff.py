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
    if quotechar not in line:  # (a character at a time only where quotes need it)
        return line.count(candidate)
    n, quoted = 0, False
    for ch in line:
        if ch == quotechar:
            quoted = not quoted
        elif ch == candidate and not quoted:
            n += 1
    return n


# Spreadsheets, by their first bytes: XLS (and other OLE2 compound files), and the zip
# packages of XLSX/XLSM/XLSB (Office Open XML) and ODS (OpenDocument), whose first entry is
# one of the package's own parts (ODS: `mimetype`, which the standard puts first).
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
OFFICE_HEAD_BYTES = 512  # enough of a zip to read its first entry's name
_OFFICE_PARTS = ("[Content_Types].xml", "mimetype")
_OFFICE_DIRS = ("_rels/", "docProps/", "xl/", "META-INF/")


def spreadsheet_undecided(head: bytes) -> bool:
    """Whether more of the file's first bytes are needed to tell a spreadsheet (a zip's first
    entry name, a magic number begun) from anything else."""
    if head.startswith(ZIP_MAGIC):
        return len(head) < OFFICE_HEAD_BYTES
    return len(head) < len(OLE2_MAGIC) and (OLE2_MAGIC.startswith(head)
                                           or ZIP_MAGIC.startswith(head))


def spreadsheet_kind(head: bytes) -> str | None:
    """"ole2" (XLS), "office-zip" (XLSX, XLSM, XLSB, ODS) or None (not a spreadsheet), from
    the file's first bytes (at least OFFICE_HEAD_BYTES of a zip, or all of a shorter file)."""
    if head.startswith(OLE2_MAGIC):
        return "ole2"
    if head.startswith(ZIP_MAGIC) and len(head) >= 30:
        name_length = int.from_bytes(head[26:28], "little")
        name = head[30:30 + name_length].decode("cp437", "replace")
        if name in _OFFICE_PARTS or name.startswith(_OFFICE_DIRS):
            return "office-zip"
    return None
