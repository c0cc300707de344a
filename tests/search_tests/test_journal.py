"""The MLflow journal: durable, in order, emptied as it is replayed, also on s3:// run directories."""

import pytest

from hpsearch.tracking.journal import JOURNAL_FILE, REJECTED_FILE, Journal, Op


def ops(n):
    return [Op("metrics", f"trial-{i}", {"points": [["val_accuracy", 0.5, 1000 + i, i]]}) for i in range(n)]


def test_each_write_is_on_disk_when_journaled_and_replayed_in_order(tmp_path):
    journal = Journal(str(tmp_path / "run"))
    for op in ops(3):
        journal.append(op)
    assert len((tmp_path / "run" / JOURNAL_FILE).read_text().splitlines()) == 3  # no save needed
    again = Journal.load(str(tmp_path / "run"))
    assert [o.ref for o in again.ops] == ["trial-0", "trial-1", "trial-2"]

    applied = []

    def apply(op):
        if op.ref == "trial-2":
            raise ConnectionError("away again")
        applied.append(op.ref)

    with pytest.raises(ConnectionError):
        again.replay(apply)
    assert applied == ["trial-0", "trial-1"]
    assert [o.ref for o in Journal.load(str(tmp_path / "run")).ops] == ["trial-2"]  # the rest stays, on disk
    assert again.replay(applied.append) == 1
    assert not (tmp_path / "run" / JOURNAL_FILE).exists()  # nothing pending: no file


def test_torn_and_damaged_lines_are_set_aside_and_the_rest_replays_in_order(tmp_path):
    journal = Journal(str(tmp_path / "run"))
    for op in ops(4):
        journal.append(op)
    path = tmp_path / "run" / JOURNAL_FILE
    lines = path.read_text().splitlines()
    damaged = ['{"kind":"metrics","ref":"t', "\x00\x00\x00", '["not", "an", "op"]', '{"kind":"tags"}']
    torn_tail = lines[3][: len(lines[3]) // 2]  # the machine died mid-append
    text = "\n".join(
        [lines[0], damaged[0], lines[1], damaged[1], lines[2], damaged[2], damaged[3], lines[3], torn_tail]
    )
    path.write_bytes(text.encode() + b"\xff\xfe")  # not even UTF-8 at the end

    again = Journal.load(str(tmp_path / "run"))
    assert [o.ref for o in again.ops] == ["trial-0", "trial-1", "trial-2", "trial-3"]
    assert again.rejected == 5
    set_aside = (tmp_path / "run" / REJECTED_FILE).read_text().splitlines()
    assert set_aside[:4] == damaged and set_aside[4].startswith(torn_tail)
    assert path.read_text().splitlines() == lines  # the journal itself holds the good lines only, in order
    assert Journal.load(str(tmp_path / "run")).rejected == 0  # nothing to set aside twice
    applied = []
    again.replay(lambda op: applied.append(op.ref))
    assert applied == ["trial-0", "trial-1", "trial-2", "trial-3"]


def test_a_journal_on_s3(monkeypatch):
    from tests.integration_tests.servers import moto_s3

    with moto_s3(buckets=("runs",)) as aws:
        for name, value in aws.items():
            monkeypatch.setenv(name, value)
        journal = Journal("s3://runs/searches/s1")
        for op in ops(2):
            journal.append(op)
        journal.save()
        assert [o.ref for o in Journal.load("s3://runs/searches/s1").ops] == ["trial-0", "trial-1"]
        journal.replay(lambda op: None)
        assert Journal.load("s3://runs/searches/s1").ops == []
