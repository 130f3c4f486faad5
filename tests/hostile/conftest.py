"""Hostile input: the app in-process, and the service process where a real socket matters."""

from tests.support.private_db import db_proxy, db_target, private_db, template_database  # noqa: F401
