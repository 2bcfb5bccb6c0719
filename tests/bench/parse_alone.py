"""The parser alone over a feed file on disk: the parsing half of the formats benchmark's L.

Usage: python -I parse_alone.py xml FILE TAG | json FILE PREFIX

  xml   lxml iterparse of the `end` events of TAG, each record cleared and its earlier
        siblings deleted (the flat-memory idiom), with the worker's safety options
  json  ijson.items(FILE, PREFIX) with ijson's fastest backend (yajl2_c), each record built

Nothing is done with the records but counting them, with the cyclic garbage collector off
(as the worker has it while it parses: its passes over the fresh records are not parsing,
and cost ijson ~30%). Prints `records N backend B`; run as a
child of the benchmark (measure_child.py times it and reads its peak RSS). Only lxml and
ijson beside the standard library, so it starts as fast as such a script can.
"""

from __future__ import annotations

import gc
import sys


def parse_xml(path: str, tag: str) -> tuple[int, str]:
    from lxml import etree

    records = 0
    context = etree.iterparse(
        path,
        events=("end",),
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    for _, el in context:
        records += 1
        el.clear(keep_tail=True)
        parent = el.getparent()
        while el.getprevious() is not None and parent is not None:
            del parent[0]
    version = ".".join(map(str, etree.LXML_VERSION[:3]))
    libxml = ".".join(map(str, etree.LIBXML_VERSION))
    return records, f"lxml {version} (libxml2 {libxml})"


def parse_json(path: str, prefix: str) -> tuple[int, str]:
    import ijson  # type: ignore[import-untyped]

    records = 0
    with open(path, "rb") as f:
        for _ in ijson.items(f, prefix):
            records += 1
    return records, f"ijson {ijson.__version__} ({ijson.backend})"


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("xml", "json"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, path, where = argv
    gc.disable()
    records, backend = (parse_xml if kind == "xml" else parse_json)(path, where)
    print(f"records {records} backend {backend}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
