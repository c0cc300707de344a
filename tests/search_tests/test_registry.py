"""Registries of samplers, schedulers and data sources: what a registration must look like, and a spec's
errors naming only the fields of the entry it chose."""

from typing import Literal

import pytest

from hpsearch import samplers, schedulers, sources
from hpsearch.errors import SpecError
from hpsearch.registry import Registry
from hpsearch.spec import parse_spec


def problems_of(data):
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(p) for p in info.value.problems]


def test_the_builtins_are_registered_in_order():
    assert samplers.REGISTRY.names()[0] == "tpe"
    assert schedulers.REGISTRY.names()[0] == "asha"
    assert sources.REGISTRY.names()[:5] == ["digits", "fashion_mnist", "cifar10", "synthetic", "npz"]


def test_a_registration_must_name_itself_with_a_literal():
    registry = Registry("sampler", samplers.SamplerSpec)

    class Unnamed(samplers.SamplerSpec):
        type: str = "x"

    with pytest.raises(TypeError, match=r"Unnamed.type must be declared as type: Literal\[NAME\] = NAME"):
        registry.register(Unnamed)
    with pytest.raises(TypeError, match="must subclass hpsearch.samplers.SamplerSpec"):
        registry.register(schedulers.SchedulerSpec)  # type: ignore[arg-type]

    class One(samplers.SamplerSpec):
        type: Literal["one"] = "one"

    class Other(samplers.SamplerSpec):
        type: Literal["one"] = "one"

    assert registry.register(One) is One and registry.register(One) is One  # again: no error
    with pytest.raises(ValueError, match="a sampler named 'one' is registered already"):
        registry.register(Other)
    with pytest.raises(KeyError, match=r"no sampler 'two' \(registered: one\)"):
        registry.get("two")


def test_errors_name_only_the_fields_of_the_chosen_source(quickstart_data):
    quickstart_data["data"] = {"dataset": "digits", "samples": 10, "root": "x"}
    assert sorted(problems_of(quickstart_data)) == [
        "data.root: unknown key, got 'x'",
        "data.samples: unknown key, got 10",
    ]
    quickstart_data["data"] = {"dataset": "fashion_mnist", "test_fraction": 0.1, "download": True}
    assert problems_of(quickstart_data) == ["data.test_fraction: unknown key, got 0.1"]  # its test set is official


def test_unknown_sampler_and_scheduler_name_the_choices(quickstart_data):
    quickstart_data["search"]["sampler"] = {"type": "cmaes-ish"}
    quickstart_data["search"]["scheduler"]["type"] = "nope"
    problems = problems_of(quickstart_data)
    assert "search.sampler.type: must be one of 'tpe', 'random', 'cmaes', 'gp', 'qmc', 'nsga2' or 'grid'" in problems[
        0
    ] and problems[0].endswith("got 'cmaes-ish'")
    assert "search.scheduler.type: must be one of 'asha', 'hyperband', 'median', 'fifo' or 'pbt'" in problems[
        1
    ] and problems[1].endswith("got 'nope'")


def test_a_plugin_that_cannot_be_imported_is_named(quickstart_data):
    quickstart_data["plugins"] = ["no_such_plugin_module", "not a module"]
    problems = problems_of(quickstart_data)
    assert problems[0].startswith("plugins[0]: cannot import module 'no_such_plugin_module': ModuleNotFoundError")
    assert problems[1] == "plugins[1]: must be a module name (pkg.module), got 'not a module'"


def test_a_plugin_module_registers_before_the_spec_is_read(quickstart_data, plugins_module):
    quickstart_data["plugins"] = [plugins_module]
    quickstart_data["data"] = {"dataset": "blobs", "classes": 5}
    quickstart_data["search"]["sampler"] = {"type": "plain_random", "seed": 1}
    quickstart_data["search"]["scheduler"] = {"type": "stop_at_half", "max_epochs": 4, "at": 4}
    assert problems_of(quickstart_data) == ["search.scheduler.at: must be < max_epochs (4), got 4"]
    quickstart_data["search"]["scheduler"]["at"] = 2
    spec = parse_spec(quickstart_data)
    assert spec.search.scheduler.milestones() == [2.0] and spec.search.scheduler.rungs() == [2, 4]
    assert spec.data.load().num_classes == 5
    dumped = spec.model_dump()  # the parent run's params: every field of the chosen entries
    assert dumped["search"]["scheduler"] == {"type": "stop_at_half", "max_epochs": 4, "at": 2}
    assert dumped["data"]["classes"] == 5


def test_a_section_without_its_name_lists_the_choices(quickstart_data):
    quickstart_data["data"] = {"seed": 1}
    assert problems_of(quickstart_data) == [
        "data.dataset: required: one of 'digits', 'fashion_mnist', 'cifar10', 'synthetic', 'npz', 'npy', 'image_folder' or 'loader'"
    ]


def test_checks_across_a_sections_fields_come_with_the_specs_other_errors(quickstart_data, tmp_path):
    """A scheduler's and a data source's own checks run on each section alone: a typo elsewhere does not
    hide them until the next run of `hpsearch validate`."""
    quickstart_data["typo"] = 1
    quickstart_data["data"] = {"npz": str(tmp_path / "missing.npz")}
    quickstart_data["search"]["scheduler"].update(max_epochs=2, grace_period=3)
    assert sorted(problems_of(quickstart_data)) == [
        f"data.npz: file not found: '{tmp_path / 'missing.npz'}'",
        "search.scheduler.grace_period: must be <= max_epochs (2), got 3",
        "typo: unknown key, got 1",
    ]
