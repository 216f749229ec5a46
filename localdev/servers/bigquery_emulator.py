"""bqemulator as the local platform runs it: a Storage Read session is let go once it has been read.

bqemulator 1.4.0 keeps every read session, with the copy of the table it materialized for it, for
as long as the process lives (`bqemulator.streaming.read_session._SESSIONS`): each read of a
3M-row table held ~170 MB more, and after a few GB every load job and read slowed by half (measured:
a 3M-row restore went from 1.4 to 2.5 s after four backups). BigQuery holds nothing of a session
in the client's memory and expires it after 6 hours. Here a session goes once ReadRows has started
on each of its streams and GRACE_SECONDS have passed (a read in flight holds its own slice of the
table), or SESSION_HOURS after it was made, whichever comes first; both are checked when a session
is made, so nothing runs in the background.

    python -m localdev.servers.bigquery_emulator start --rest-port 9050 --grpc-port 9060 ...
"""

from __future__ import annotations

import time
from typing import Any

GRACE_SECONDS = 2.0  # a read session kept after its last stream started being read
SESSION_HOURS = 6.0  # BigQuery's own expiry of a read session


class ReadSessions(dict[str, Any]):
    """The emulator's session registry, which forgets sessions that are read or expired."""

    def __init__(self) -> None:
        super().__init__()
        self.made: dict[str, float] = {}
        self.started: dict[str, dict[str, float]] = {}  # session -> stream -> when ReadRows began

    def __setitem__(self, name: str, state: Any) -> None:
        now = time.monotonic()
        self.expire(now)
        self.made[name] = now
        super().__setitem__(name, state)

    def read_started(self, session: str, stream: str) -> None:
        self.started.setdefault(session, {})[stream] = time.monotonic()

    def expire(self, now: float) -> None:
        for name, state in list(self.items()):
            begun = self.started.get(name, {})
            all_read = bool(state.streams) and all(s.name in begun for s in state.streams)
            done = all_read and now - max(begun.values()) > GRACE_SECONDS
            if done or now - self.made.get(name, now) > SESSION_HOURS * 3600:
                self.pop(name, None)
                self.made.pop(name, None)
                self.started.pop(name, None)


def install() -> ReadSessions:
    """Put a `ReadSessions` in place of the emulator's registry (before it serves anything)."""
    from bqemulator.grpc_api import read_servicer
    from bqemulator.streaming import read_session

    sessions = ReadSessions()
    read_session._SESSIONS = sessions  # noqa: SLF001 - the module's functions read it as a global
    original = read_session.get_stream_data

    def get_stream_data(session_name: str, stream_name: str) -> Any:
        found = original(session_name, stream_name)
        if found is not None:
            sessions.read_started(session_name, stream_name)
        return found

    read_session.get_stream_data = get_stream_data
    read_servicer.get_stream_data = get_stream_data  # imported by name there
    return sessions


def main() -> None:
    install()
    from bqemulator.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
