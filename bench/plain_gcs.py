"""What a user would write instead of Backstop for one bucket (the Cloud Storage bench's reference).

    python bench/plain_gcs.py PROJECT SOURCE_BUCKET TARGET_BUCKET

Creates TARGET_BUCKET, lists SOURCE_BUCKET and copies every object server-side with `copy_blob` on 16
threads: a backup (source -> a copy bucket) and a restore (the copy -> a new bucket) are the same
loop. No generations, checksums, manifest or verification. It imports nothing of Backstop: the
endpoint comes from STORAGE_EMULATOR_HOST, as a user would point a script at the local platform.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

THREADS = 16
TIMEOUT = 120.0


def main(project: str, source: str, target: str) -> int:
    client = storage.Client(project=project, credentials=AnonymousCredentials())
    src, dst = client.bucket(source), client.create_bucket(target)
    names = [b.name for b in client.list_blobs(source, timeout=TIMEOUT)]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda n: src.copy_blob(src.blob(n), dst, n, timeout=TIMEOUT), names))
    print(len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
