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
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

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
# scheme://user:PASSWORD@ in any text (the password ends at the last '@' before the host; no '/', '@' or space)
_URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<password>[^\s/@]+)(?=@)")
# a token alone in a web URI's userinfo (https://TOKEN@host): on the web that is a credential, not a user name
_WEB_SCHEMES = ("http", "https", "ws", "wss", "ftp", "ftps", "git+https", "git+http")
_URI_TOKEN = re.compile(
    rf"(?P<head>\b(?:{'|'.join(map(re.escape, _WEB_SCHEMES))})://)(?P<token>[^\s:/@'\"]+)(?=@)", re.IGNORECASE
)
# query parameters (and key=value settings) that carry a password, token, key or signature
# (a parameter named so, or ending in one of these after '_', '-' or '.': access_token, X-Amz-Signature)
_SECRET_NAME = (
    r"(?:[A-Za-z0-9]+[_.-])*(?:password|passwd|pwd|pass|secret|token|signature|credential|sig|key|apikey|"
    r"sslpassword|accesskey|secretkey|sas)"
)
_QUERY_SECRET = re.compile(rf"(?P<head>[?&;]{_SECRET_NAME}=)(?P<value>[^&\s'\"#;]+)", re.IGNORECASE)
_SETTING_SECRET = re.compile(
    r"(?P<head>\b(?:[A-Za-z0-9]+[_-])*(?:password|passwd|secret|token)\s*=\s*)(?P<value>[^&\s'\"#;,]+)",
    re.IGNORECASE,
)
_SECRET_PARAM = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
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
    text = _URI_TOKEN.sub(lambda m: m["head"] + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, text)
    text = _SETTING_SECRET.sub(lambda m: m["head"] + MASK, text)
    for secret in _known():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _secret_query(query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a query string that carry a secret."""
    return [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if _SECRET_PARAM.match(k)]


def _is_web(scheme: str) -> bool:
    return scheme.lower() in _WEB_SCHEMES


def strip_password(uri: str) -> str:
    """The URI without its secrets: what is recorded and sent. The password of the userinfo
    (``postgresql://user@host/db``), a web URI's token-only userinfo (``https://host``) and the query
    parameters that carry a password, token, key or signature go; everything else stays as it was."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return redact(uri)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        if password is not None:
            netloc = f"{user.split(':', 1)[0]}@{host}"
        elif _is_web(parts.scheme):
            netloc = host
    query = "&".join(item for item in parts.query.split("&") if not _SECRET_PARAM.match(unquote(item.split("=", 1)[0])))
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # untouched (urlunsplit would also drop the '//' of an empty host: sqlite:////path)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def has_password(uri: str) -> bool:
    """Whether ``uri`` carries a credential itself (a password, a web token, a secret query parameter)."""
    try:
        parts = urlsplit(uri)
        return (
            parts.password is not None
            or bool(_secret_query(parts.query))
            or ("@" in parts.netloc and _is_web(parts.scheme))
        )
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
    credentials from the URL), a token alone (``https://TOKEN@host``, no password anywhere) into
    ``MLFLOW_TRACKING_TOKEN``. Every credential in the URI (query parameters included) is registered as
    a secret either way."""
    parts = urlsplit(uri)
    for _name, value in _secret_query(parts.query):
        register(value)
    if parts.username is None or "@" not in parts.netloc:
        return uri
    password = unquote(parts.password) if parts.password is not None else password_from_env()
    register(password)
    host = parts.netloc.rsplit("@", 1)[1]
    if _is_web(parts.scheme):
        if password is None:  # https://TOKEN@host
            register(unquote(parts.username))
            os.environ["MLFLOW_TRACKING_TOKEN"] = unquote(parts.username)
        else:
            os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
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
