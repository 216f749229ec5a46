"""What a local server holds in memory (the Composer API's environments, Airflow's metadata, Backup
for GKE's clusters and backups), kept across `backstop down` / `backstop up` on a persistent platform.

The state is pickled to one file under the platform's home: written again (whole, then renamed into
place) a second after it changed, and once more when the server is told to stop (SIGTERM, what
`backstop down` sends), so a stop loses nothing and a crash at most the last second. A file that
cannot be read is moved aside as `<file>.unreadable` and the server starts empty, saying so on
stderr (the service's log). Only the platform's own servers read these files, which live in the
platform's home beside its other data.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAVE_EVERY = 1.0  # seconds between checks for a change


def keep_state(
    path: str | None,
    lock: Any,
    dump: Callable[[], Any],
    load: Callable[[Any], None],
    every: float = SAVE_EVERY,
) -> Callable[[], None] | None:
    """Load what `path` holds into the server (`load(value)`), then keep `dump()` saved there.

    `lock` guards the server's state (held around `dump` and `load`). Call it from the main thread
    (it sets the SIGTERM handler). Returns the save function (None without a path: nothing kept)."""
    if not path:
        return None
    file = Path(path)
    if file.exists():
        try:
            value = pickle.loads(file.read_bytes())
        except Exception as exc:  # noqa: BLE001 - any unreadable file: set aside, start empty
            aside = file.with_name(file.name + ".unreadable")
            os.replace(file, aside)
            print(f"{file}: unreadable ({exc}); moved to {aside}, starting empty", file=sys.stderr)
        else:
            with lock:
                load(value)
    saving = threading.Lock()
    last = [b""]

    def save() -> None:
        with saving:
            with lock:
                data = pickle.dumps(dump())
            if data != last[0]:
                part = file.with_name(file.name + ".part")
                part.write_bytes(data)
                os.replace(part, file)
                last[0] = data

    def keep() -> None:
        while True:
            time.sleep(every)
            save()

    def stop(signum: int, frame: Any) -> None:
        save()
        os._exit(0)

    save()
    threading.Thread(target=keep, name="keep-state", daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    return save
