"""Secrets stay secret: a password or token is never printed, logged, stored in MLflow, written to a
run directory or put on a Ray job in clear text.

* :func:`redact` masks what hpsearch knows to be secret in any text: the password of every URI
  (``postgresql://user:***@host/db``) and the values of the credential variables (:data:`SECRET_ENV`,
  the files :data:`PASSWORD_FILE_ENV` and ``RAY_AUTH_TOKEN_PATH`` name, ``~/.ray/auth_token``).
* :func:`guard_streams` puts :func:`redact` in front of the process's stdout and stderr (the CLI does it
  first thing): whatever hpsearch, Ray or MLflow print there comes out masked.
* A tracking store's password does not travel with a search: run directories and Ray jobs record the
  URI without it (:func:`strip_password`), and whoever connects (the driver, a submitted job on the
  cluster, ``hpsearch resume``) takes it from :data:`PASSWORD_ENV` or the file :data:`PASSWORD_FILE_ENV`
  names (:func:`connectable`). For MLflow servers MLflow's own ``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD`` work too.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit, urlunsplit

PASSWORD_ENV = "HPSEARCH_TRACKING_PASSWORD"
PASSWORD_FILE_ENV = "HPSEARCH_TRACKING_PASSWORD_FILE"
SECRET_ENV = (
    PASSWORD_ENV,
    "RAY_AUTH_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "DATABRICKS_TOKEN",
)
MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary text; no real credential is this short
# scheme://user:PASSWORD@ in any text (the password ends at '@'; it has no '/', '@' or space in it)
_URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<password>[^\s/@'\"]+)(?=@)")
_registered: set[str] = set()


def register(secret: str | None) -> None:
    """Mask ``secret`` (and its URL-quoted form) wherever it appears from now on."""
    if secret and len(secret) >= _MIN_SECRET:
        _registered.update({secret, quote(secret, safe=""), unquote(secret)})
        _known.cache_clear()


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).expanduser().read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@functools.lru_cache(maxsize=1)
def _known() -> tuple[str, ...]:
    values = {os.environ.get(name) for name in SECRET_ENV}
    values |= {_read(os.environ[name]) for name in (PASSWORD_FILE_ENV, "RAY_AUTH_TOKEN_PATH") if os.environ.get(name)}
    values.add(_read("~/.ray/auth_token"))
    found = {v for v in values if v and len(v) >= _MIN_SECRET} | _registered
    return tuple(sorted(found, key=len, reverse=True))  # the longest first: no secret left half-masked


def redact(text: str) -> str:
    """``text`` with every URI password and every known secret replaced by ``***``."""
    if not text:
        return text
    text = _URI_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    for secret in _known():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def strip_password(uri: str) -> str:
    """The URI without its password (``postgresql://user@host/db``): what is recorded and sent."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


def has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:
        return False


def password_from_env() -> str | None:
    """The tracking store's password as this machine provides it (``HPSEARCH_TRACKING_PASSWORD`` or
    the file ``HPSEARCH_TRACKING_PASSWORD_FILE`` names), or None."""
    value = os.environ.get(PASSWORD_ENV) or (
        _read(os.environ[PASSWORD_FILE_ENV]) if os.environ.get(PASSWORD_FILE_ENV) else None
    )
    register(value)
    return value


def connectable(uri: str) -> str:
    """The URI to hand to MLflow. A user without a password gets the password from the environment
    (:func:`password_from_env`). An MLflow server's ``user:password@`` moves into MLflow's
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow's REST client does not read
    credentials from the URL). The password is registered as a secret either way."""
    parts = urlsplit(uri)
    if parts.username is None or "@" not in parts.netloc:
        return uri
    password = unquote(parts.password) if parts.password is not None else password_from_env()
    register(password)
    host = parts.netloc.rsplit("@", 1)[1]
    if parts.scheme in ("http", "https"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
        if password is not None:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = password
        _known.cache_clear()
        return urlunsplit(parts._replace(netloc=host))
    if password is None:
        return uri
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(password, safe='')}@{host}"))


class _Redacting:
    """A text stream that masks secrets in what is written to it (and is otherwise the stream)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Mask secrets in everything this process prints (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Redacting):
            setattr(sys, name, _Redacting(stream))


__all__ = [
    "MASK",
    "PASSWORD_ENV",
    "PASSWORD_FILE_ENV",
    "SECRET_ENV",
    "connectable",
    "guard_streams",
    "has_password",
    "password_from_env",
    "redact",
    "register",
    "strip_password",
]
