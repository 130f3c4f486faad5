"""The telemetry tests that need a database outage reach the session's server through a proxy."""

from tests.support.private_db import db_proxy, db_target  # noqa: F401
