"""Prefect in tests: a private home (so a throw-away database), offline.

Flows run in-process start Prefect's temporary server on that home; it is
faster to start here than prefect_test_harness under load."""

from __future__ import annotations

import os
import tempfile

# Before Prefect reads its settings: nothing of the user's ~/.prefect is touched.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
# the temporary server needs more than the default 20 s on 2 busy cores
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

