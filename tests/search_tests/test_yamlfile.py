import time
from pathlib import Path

import pytest
import yaml

from hpsearch import yamlfile
from hpsearch.errors import SpecError
from hpsearch.spec import load_spec
from tests.helpers import hpsearch


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


QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def hostile_specs(tmp_path: Path, only: str | None = None) -> dict[str, Path]:
    """The forms an attacker tries on ``hpsearch validate`` (each was minutes of CPU, a traceback, or a
    file's contents in the error before these limits)."""
    base = QUICKSTART.read_text()
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    classic = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    classic += "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    texts = {
        "aliases_in_space": base.replace("space:\n", "space:\n  " + "\n  ".join(laughs) + "\n  lol: {choice: *a9}\n"),
        "classic_laughs": "name: x\n" + classic + "space: *i\n",
        "thirty_megabytes": base + "# " + "x" * (30 << 20) + "\n",
        "nested_lists": "name: x\nspace: " + "[" * 20000 + "]" * 20000 + "\n",
        "anchor_in_itself": "name: x\nspace: &a [*a]\n",
        "anchor_in_its_mapping": "name: x\nspace: &a {k: *a}\n",
        "space_is_etc_passwd": base.replace("space:\n", "space: /etc/passwd\nunused:\n"),
        "trainable_os_system": base.replace("trainable: mlp", "trainable: 'os:system'"),
    }
    paths = {}
    for name, text in texts.items():
        if only is not None and name != only:
            continue
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


@pytest.mark.parametrize(
    "name",
    [
        "aliases_in_space",
        "classic_laughs",
        "thirty_megabytes",
        "nested_lists",
        "anchor_in_itself",
        "anchor_in_its_mapping",
        "space_is_etc_passwd",
        "trainable_os_system",
    ],
)
def test_a_hostile_spec_is_refused_quickly_and_briefly(tmp_path, name):
    path = hostile_specs(tmp_path, only=name)[name]
    started = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_spec(path)
    took = time.perf_counter() - started
    assert took < 2.0, f"{name}: {took:.1f} s to refuse"  # a bound on an attack (before: over 60 s), not a benchmark
    message = str(err.value)
    assert len(message) < 1500, message[:3000]
    assert "root:" not in message and "lol" not in message and "xxxxxxxxxx" not in message, message


def test_each_hostile_form_exits_2_naming_the_limit(tmp_path):
    paths = hostile_specs(tmp_path)
    expected = {
        "aliases_in_space": "aliases expand to more than 100,000 values",
        "classic_laughs": "aliases expand to more than 100,000 values",
        "thirty_megabytes": "the limit is 1,048,576",
        "nested_lists": "nested more than 64 levels deep",
        "anchor_in_itself": "an anchor contains itself",
        "anchor_in_its_mapping": "an anchor contains itself",
        "space_is_etc_passwd": "/etc/passwd holds a str, not a mapping",
        "trainable_os_system": "trainable: expected a function",
    }
    for name, path in paths.items():
        result = hpsearch("validate", path, timeout=60)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert expected[name] in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and len(result.stderr) < 1500, (name, result.stderr[-2000:])


def test_a_yaml_error_names_the_place_not_the_text(tmp_path):
    secret_line = "password: hunter2-is-not-printed: [unclosed"
    with pytest.raises(yaml.YAMLError) as err:
        yamlfile.load("a: 1\n" + secret_line + "\n")
    path, message = yamlfile.problem(err.value)
    assert "hunter2" not in message and "line 2" in message, message
    # aliases within the limits still work, and a value reached twice is checked once
    assert yamlfile.load("a: &x {b: 1}\nc: [*x, *x]\n") == {"a": {"b": 1}, "c": [{"b": 1}, {"b": 1}]}
    assert yamlfile.load("") is None


def test_a_long_value_in_an_error_is_a_short_excerpt(tmp_path, quickstart_data):
    quickstart_data["search"]["num_trials"] = "n" * 50_000
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(quickstart_data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (problem,) = [p for p in err.value.problems if p.path == "search.num_trials"]
    assert len(problem.message) < 400 and "more characters" in problem.message, problem.message
