"""Fault tests run the real service as a process on a private database, reached directly or through a
proxy the test cuts, and (where events matter) a real RabbitMQ."""

from tests.support.private_db import db_proxy, db_target, private_db, template_database  # noqa: F401
