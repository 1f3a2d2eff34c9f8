"""Reading a run stream on the client side: SSE frames, event ids, the progress line.

Pure parsing and printing, no HTTP: :mod:`runyard.client_cli` feeds it the
lines of a response.
"""

from __future__ import annotations

import json
import shutil
import time
import unicodedata
from collections.abc import Iterator
from typing import Any, TextIO, TypeAlias

# An event id: runyard's are integers; others (langgraph dev: "1712345678901-0") are opaque.
EventId: TypeAlias = int | str


def event_id(text: str) -> EventId:
    """An integer id as an int (runyard's); any other id as the string it is."""
    try:
        return int(text)
    except ValueError:
        return text


def frames(lines: Iterator[str]) -> Iterator[tuple[EventId | None, str, Any]]:
    """SSE events as (id, event, data), per the WHATWG parsing rules.

    The id is the last one the stream set (an event without ``id:`` keeps it);
    data that is not JSON comes through as its text.
    """
    event, data = "", list[str]()
    ident: EventId | None = None
    last: EventId | None = None
    for line in lines:
        if line == "":
            if ident is not None:
                last = ident
            if data:
                text = "\n".join(data)
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
                yield last, event or "message", value
            event, data, ident = "", [], None
            continue
        if line.startswith(":"):
            continue  # a comment: a heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            ident = event_id(value)


class Progress:
    """One live line on a terminal, as wide as the terminal; plain lines otherwise."""

    def __init__(self, out: TextIO, *, enabled: bool, run_id: str) -> None:
        self.out = out
        self.enabled = enabled
        self.run_id = run_id
        self.count = 0
        self.started = time.monotonic()
        self.live = False  # a line is on screen without its newline

    def event(self, ident: EventId | None, event: str, data: Any) -> None:
        self.count += 1
        text = json.dumps(data, ensure_ascii=False)
        shown = "-" if ident is None else ident
        if not self.enabled:
            print(f"{shown:>5}  {event:<9} {text}", file=self.out, flush=True)
            return
        elapsed = time.monotonic() - self.started
        line = f"{self.run_id[:8]} · {self.count} events · {elapsed:5.1f}s · {event} {text}"
        # One column short of the width: some terminals wrap on the last column.
        columns = shutil.get_terminal_size().columns - 1
        self.out.write("\r\x1b[2K" + fit(line, columns))
        self.out.flush()
        self.live = True

    def done(self) -> None:
        if self.live:
            self.out.write("\n")
            self.out.flush()
            self.live = False


def fit(text: str, columns: int) -> str:
    """The start of ``text`` that fills at most ``columns`` terminal cells, on one line.

    East Asian wide characters (and most emoji) take two cells, combining marks
    none; control characters become spaces, so nothing moves the cursor.
    """
    shown: list[str] = []
    used = 0
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            char, cells = " ", 1
        elif category in ("Mn", "Me", "Cf"):
            cells = 0
        else:
            cells = 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        if used + cells > columns:
            break
        shown.append(char)
        used += cells
    return "".join(shown)
