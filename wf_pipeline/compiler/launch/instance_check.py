"""Checks a dagster.yaml's PostgreSQL storage before Dagster loads it.

Dagster reports an unset ``{env: ...}`` variable or a server it cannot reach with a long
traceback, after retrying the connection for about a minute (dagster-postgres'
``retry_pg_connection_fn``). This module answers first, with a catalogue code and the
figures a user acts on: the file, the variables, the host, port, database and user, and
the server's own reason. A configuration without PostgreSQL storage is not checked here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import yaml

from wf_pipeline.errors import (
    CONFIG_INSTANCE_ENV_MISSING,
    CONFIG_INSTANCE_REFUSED,
    CONFIG_INSTANCE_UNREACHABLE,
    ConfigError,
)

# Seconds to wait for the server once; a reachable server answers in milliseconds.
CONNECT_TIMEOUT_S = 5
# libpq's messages for a server that was reached but would not let this login in.
_REFUSAL_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",  # the role or the database
    "no pg_hba.conf entry",
    "permission denied",
)
# dagster-postgres' connection keys (``postgres_db``) and libpq's names for them.
_LIBPQ_KEYS = {
    "hostname": "host",
    "port": "port",
    "username": "user",
    "password": "password",
    "db_name": "dbname",
}


def _env_references(node: Any) -> Iterator[str]:
    """Names of the ``{env: NAME}`` values anywhere in a parsed dagster.yaml (Dagster's syntax)."""
    if isinstance(node, Mapping):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
            return
        for value in node.values():
            yield from _env_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_references(value)


def _postgres_blocks(node: Any) -> Iterator[tuple[str, Any]]:
    """Every ``postgres_db`` mapping and ``postgres_url`` value of a parsed dagster.yaml."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("postgres_db", "postgres_url"):
                yield key, value
            else:
                yield from _postgres_blocks(value)
    elif isinstance(node, list):
        for value in node:
            yield from _postgres_blocks(value)


def _resolve(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping) and set(value) == {"env"}:
        return env[value["env"]]
    return value


def _connection_args(kind: str, block: Any, env: Mapping[str, str]) -> dict[str, Any]:
    if kind == "postgres_url":
        url = str(_resolve(block, env))
        parts = urlsplit(url)
        return {
            "dsn": url,
            "host": parts.hostname or "",
            "port": parts.port or "",
            "dbname": parts.path.lstrip("/"),
            "user": parts.username or "",
        }
    args = {
        libpq: _resolve(block[key], env)
        for key, libpq in _LIBPQ_KEYS.items()
        if isinstance(block, Mapping) and key in block
    }
    for name, value in (block.get("params") or {}).items() if isinstance(block, Mapping) else ():
        args[name] = _resolve(value, env)
    return args


def check_postgres_instance(config_path: Path, env: Mapping[str, str]) -> None:
    """Refuse a dagster.yaml whose PostgreSQL storage cannot be opened, before Dagster tries.

    Args:
        config_path: the instance's dagster.yaml.
        env: the environment Dagster will read the ``{env: NAME}`` values from (the one
            the settings were read from, `Settings.secrets`).

    Returns:
        None when the file names no PostgreSQL storage, or every server it names accepted
        a connection (one connection per storage block, closed at once).

    Raises:
        ConfigError: ``CONFIG_INSTANCE_ENV_MISSING`` (figures: path, variables) when a
            variable the file reads is not set (an empty value is set);
            ``CONFIG_INSTANCE_UNREACHABLE`` (figures: host, port, database, user, reason)
            when no server answers within 5 s or the connection is refused;
            ``CONFIG_INSTANCE_REFUSED`` (the same figures) when the server answers but
            refuses the login or the database (wrong password, unknown role or database).
            Messages never carry the password.
    """
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return  # Dagster's own loader reports a file it cannot read or parse
    blocks = list(_postgres_blocks(raw))
    if not blocks:
        return
    missing = sorted({name for name in _env_references(raw) if name not in env})
    if missing:
        raise ConfigError(
            CONFIG_INSTANCE_ENV_MISSING,
            f"{config_path} reads {', '.join(missing)} from the environment, and "
            f"{'it is' if len(missing) == 1 else 'they are'} not set (an empty value counts as set)",
            path=str(config_path),
            variables=missing,
        )
    for kind, block in blocks:
        args = _connection_args(kind, block, env)
        where = {
            "host": str(args.get("host", "")),
            "port": str(args.get("port", "")),
            "database": str(args.get("dbname", "")),
            "user": str(args.get("user", "")),
        }
        try:
            if "dsn" in args:
                connection = psycopg2.connect(args["dsn"], connect_timeout=CONNECT_TIMEOUT_S)
            else:
                connection = psycopg2.connect(**args, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg2.Error as exc:
            reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            reason = reason or type(exc).__name__
            password = str(args.get("password") or "")
            if password:
                reason = reason.replace(password, "***")
            refused = any(marker in reason for marker in _REFUSAL_MARKERS)
            raise ConfigError(
                CONFIG_INSTANCE_REFUSED if refused else CONFIG_INSTANCE_UNREACHABLE,
                f"the Dagster instance in {config_path} cannot open PostgreSQL at "
                f"{where['host']}:{where['port']} (database {where['database']!r}, user {where['user']!r}): "
                f"{reason}",
                path=str(config_path),
                reason=reason,
                **where,
            ) from None
        connection.close()
