"""Backstop's pure core: the manifest format, names, errors, retention, objectives, run records,
recovery plans, archives, secrets boxes and report tables.

No Prefect, no Google SDK, no network and nothing from `tasks/`, `flows/`, `blocks/` or the rest of
`backstop/` (tests/project/test_layering.py holds it to that): everything here is unit-tested in
microseconds, and every other layer may import it.
"""
