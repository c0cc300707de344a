import pytest

from hpsearch import yamlfile
from hpsearch.errors import SpecError
from hpsearch.spec import load_spec


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    with pytest.raises(yamlfile.DuplicateKeyError) as err:
        yamlfile.load("a: 1\nb:\n  c: 1\n  d: [{e: 1, e: 2}]\n")
    assert (err.value.key, err.value.first_line, err.value.line) == ("b.d[0].e", 4, 4)
    assert yamlfile.load("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n") == {"a": {"b": 1}, "c": {"b": 2}}  # merges


def test_a_spec_with_a_key_twice_is_invalid(tmp_path, quickstart_data):
    import yaml

    rest = yaml.safe_dump({k: v for k, v in quickstart_data.items() if k != "name"}, sort_keys=False)
    text = "name: first\n" + rest + "name: second\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    last = len(text.splitlines())
    assert [(p.path, p.message) for p in err.value.problems] == [
        ("name", f"given twice, at lines 1 and {last} (one value per key)")
    ]


def test_a_space_file_with_a_key_twice_is_invalid(tmp_path, quickstart_data):
    (tmp_path / "space.yaml").write_text("units: {choice: [32, 64]}\nunits: {choice: [128]}\n")
    quickstart_data["space"] = "space.yaml"
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(quickstart_data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert any(p.path == "space[space.yaml].units" and "lines 1 and 2" in p.message for p in err.value.problems)
