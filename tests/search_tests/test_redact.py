import io
import sys

import pytest

from hpsearch import redact


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch, tmp_path):
    for name in redact.SECRET_ENV + (redact.PASSWORD_FILE_ENV, "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(redact, "_registered", set())
    redact._known.cache_clear()
    yield
    redact._known.cache_clear()


def test_uri_passwords_are_masked_anywhere_in_text():
    text = "store postgresql://hp:s3cr%40t@db:5432/mlflow and https://u:p4ss@h/x (mysql+pymysql://a:b@c/d)"
    assert (
        redact.redact(text)
        == "store postgresql://hp:***@db:5432/mlflow and https://u:***@h/x (mysql+pymysql://a:***@c/d)"
    )
    assert redact.redact("sqlite:////tmp/a:b@c.db") == "sqlite:////tmp/a:b@c.db"  # a path, not a password
    assert redact.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_credential_variables_and_token_files_are_masked(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "tok-123456")
    (tmp_path / "pw").write_text("from-a-file\n")
    monkeypatch.setenv(redact.PASSWORD_FILE_ENV, str(tmp_path / "pw"))
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("ray-file-token")
    redact._known.cache_clear()
    assert redact.redact("a tok-123456 b from-a-file c ray-file-token") == "a *** b *** c ***"
    assert redact.redact("abc") == "abc"  # too short to be a secret: never masks ordinary text


def test_strip_and_connect(monkeypatch):
    assert redact.strip_password("postgresql://hp:pw@db/m") == "postgresql://hp@db/m"
    assert redact.strip_password("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    # without a password in the URI, the environment gives it (and it becomes a secret)
    assert redact.connectable("postgresql://hp@db/m") == "postgresql://hp@db/m"
    monkeypatch.setenv(redact.PASSWORD_ENV, "p@ss/word")
    assert redact.connectable("postgresql://hp@db/m") == "postgresql://hp:p%40ss%2Fword@db/m"
    assert redact.redact("got p@ss/word") == "got ***"
    # an MLflow server's credentials move to MLflow's own variables
    assert redact.connectable("https://alice:pw-9876@mlflow.example") == "https://mlflow.example"
    import os

    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw-9876"
    assert redact.redact("pw-9876") == "***"


def test_guarded_streams_mask_what_anyone_prints(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    redact.guard_streams()
    redact.guard_streams()  # idempotent
    redact.register("canary-XYZ")
    print("uri postgresql://u:canary-XYZ@h/d and canary-XYZ")
    assert out.getvalue() == "uri postgresql://u:***@h/d and ***\n"
