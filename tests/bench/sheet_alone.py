"""A spreadsheet reader alone over an XLSX file on disk: the reading half of the
spreadsheet benchmark's L, and the reader it was chosen over.

Usage: python -I sheet_alone.py worker|calamine|openpyxl FILE SHEET

  worker    the worker's spreadsheet parser (worker/parsers/spreadsheet.py): the file
            spooled to its temporary file, then the sheet streamed into rows of texts
            (worker/parsers/xlsxstream.py), in batches, as an import reads it
  calamine  python-calamine: the sheet loaded, then every row built as Python values
            (what the worker read XLSX with before it streamed them)
  openpyxl  openpyxl's read-only mode, values only: the sheet streamed row by row

Nothing is done with the rows but counting them, with the cyclic garbage collector off (as
the worker has it while it parses). Prints `records N backend B` (the rows after the
header); run as a child of the benchmark (measure_child.py times it and reads its peak RSS).
"""

from __future__ import annotations

import gc
import sys


def read_calamine(path: str, sheet: str) -> tuple[int, str]:
    from importlib.metadata import version

    from python_calamine import CalamineWorkbook

    rows = 0
    with CalamineWorkbook.from_path(path) as workbook:
        for _ in workbook.get_sheet_by_name(sheet).iter_rows():
            rows += 1
    return rows - 1, f"python-calamine {version('python-calamine')}"


def read_worker(path: str, sheet: str) -> tuple[int, str]:
    from worker.parsers.spreadsheet import SpreadsheetRecords

    records = SpreadsheetRecords(sheet)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            records.feed(chunk)
    records.close()
    rows = sum(len(batch.rows) for batch in records.rest())
    return rows, f"feed-worker {records.details.get('format')} stream"


def read_openpyxl(path: str, sheet: str) -> tuple[int, str]:
    import openpyxl

    rows = 0
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    for _ in workbook[sheet].iter_rows(values_only=True):
        rows += 1
    workbook.close()
    return rows - 1, f"openpyxl {openpyxl.__version__} read-only"


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in READERS:
        print(__doc__, file=sys.stderr)
        return 2
    kind, path, sheet = argv
    gc.disable()
    records, backend = READERS[kind](path, sheet)
    print(f"records {records} backend {backend}", flush=True)
    return 0


READERS = {"worker": read_worker, "calamine": read_calamine, "openpyxl": read_openpyxl}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
