"""What a source's transport says about the completeness of the bytes it gave."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Transfer:
    """Filled in by the source as the download goes. `vouched`: the transport checked the
    length (an HTTP Content-Length met or a chunked body's last chunk seen, the size FTP's
    SIZE or SFTP's stat reported, a local file's size at open); a source that falls short
    of a length it knows raises TruncatedError itself. Unvouched (an HTTP body delimited by
    the connection's close, an FTP server without SIZE, a pipe), only the document's own
    end can tell a cut file from a whole one (formats.finish). `received`: bytes so far.
    `expected`: the length the transport announced, when it did (the progress bar's total)."""

    vouched: bool = False
    received: int = 0
    expected: int | None = None
