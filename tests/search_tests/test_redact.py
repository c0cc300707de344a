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


@pytest.mark.parametrize(
    "uri, secret, recorded",
    [
        ("postgresql://h/db?password=pw-in-query", "pw-in-query", "postgresql://h/db"),
        ("postgresql://u@h/db?sslmode=require&password=pw-2nd", "pw-2nd", "postgresql://u@h/db?sslmode=require"),
        ("postgresql://hp:it's-q'uoted@db/m", "it's-q'uoted", "postgresql://hp@db/m"),
        ("postgresql://hp:p%27w%40rd%3A1@db/m", "p%27w%40rd%3A1", "postgresql://hp@db/m"),
        ("https://ghp_TOKEN1234@mlflow.example/x", "ghp_TOKEN1234", "https://mlflow.example/x"),
        ("https://mlflow.example/?access_token=tok-5678&x=1", "tok-5678", "https://mlflow.example/?x=1"),
        (
            "s3://bucket/runs?X-Amz-Signature=abcdef123&X-Amz-Credential=AKIA999&region=eu",
            "abcdef123",
            "s3://bucket/runs?region=eu",
        ),
        ("https://store.example/c?sv=2020&sig=SAS-sig-42", "SAS-sig-42", "https://store.example/c?sv=2020"),
    ],
)
def test_every_uri_form_is_masked_and_recorded_without_its_secret(uri, secret, recorded):
    text = f"connecting to {uri} failed ('{uri}')"
    masked = redact.redact(text)
    assert secret not in masked and "***" in masked, masked
    assert redact.strip_password(uri) == recorded
    assert redact.has_password(uri) and not redact.has_password(recorded)
    assert "AKIA999" not in redact.redact(uri)


def test_settings_that_carry_secrets_are_masked_in_free_text():
    text = "dsn: host=db password=kv-pass-1 user=hp; RAY_AUTH_TOKEN=tok-abcdef client_secret = cs-999"
    masked = redact.redact(text)
    assert "kv-pass-1" not in masked and "tok-abcdef" not in masked and "cs-999" not in masked, masked
    assert "user=hp" in masked and "host=db" in masked
    ordinary = (
        "val_accuracy=0.93 max_tokens=5 key: units lr=0.01 http://127.0.0.1:5000/#/experiments/1"
        " http://h:5000/#/experiments/1/runs?orderByKey=metrics.%60val_accuracy%60&orderByAsc=false"
    )
    assert redact.redact(ordinary) == ordinary


def test_a_token_alone_connects_as_mlflow_token(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    assert redact.connectable("https://ghp_TOKEN1234@mlflow.example") == "https://mlflow.example"
    import os

    assert os.environ.pop("MLFLOW_TRACKING_TOKEN") == "ghp_TOKEN1234"
    assert redact.redact("token ghp_TOKEN1234 leaked") == "token *** leaked"
    redact.connectable("postgresql://h/db?password=q-secret-1")
    assert redact.redact("q-secret-1") == "***"


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
