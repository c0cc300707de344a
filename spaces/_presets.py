"""Search-space presets shipped as YAML next to this module, and loading of user spaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpsearch import yamlfile
from hpsearch.spaces._schema import Space, SpaceError, parse_space

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_first_configs(name: str) -> list[dict[str, Any]]:
    """The first configs a search of preset ``name`` runs (``presets/first/NAME.yaml``; [] if it has none)."""
    path = PRESET_DIR / "first" / f"{name}.yaml"
    if not path.is_file():
        return []
    data = yamlfile.load(path.read_text())
    return [dict(c) for c in data or []]


def load_space(ref: Any, base_dir: Path | None = None, path: str = "space") -> Space:
    """Resolve a preset name, a YAML file path, or an inline mapping to a :class:`Space`.

    Relative file paths are resolved against ``base_dir`` (the job spec's folder).
    """
    if isinstance(ref, dict):
        return parse_space(ref, path)
    if not isinstance(ref, str) or not ref:
        raise SpaceError([(path, f"must be a preset name, a YAML file path or a mapping, got {ref!r}")])
    preset = PRESET_DIR / f"{ref}.yaml"
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        if not preset.is_file():
            raise SpaceError([(path, f"unknown preset {ref!r} (available: {', '.join(preset_names())})")])
        return parse_space(yamlfile.load(preset.read_text()), f"{path}[{ref}]")
    file = Path(ref).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    if not file.is_file():
        raise SpaceError([(path, f"space file not found: {str(file)!r}")])
    try:
        data = yamlfile.load(file.read_text())
    except yamlfile.DuplicateKeyError as exc:
        key, message = yamlfile.problem(exc)
        raise SpaceError([(f"{path}[{file.name}].{key}", message)]) from exc
    except yaml.YAMLError as exc:
        raise SpaceError([(path, f"{file} is not valid YAML: {yamlfile.describe(exc)}")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError([(path, f"cannot read space file {str(file)!r}: {type(exc).__name__}")]) from exc
    if not isinstance(data, dict):  # say what it holds, never the file's contents
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise SpaceError([(path, f"{file} holds {kind}, not a mapping of parameter names")])
    return parse_space(data, f"{path}[{file.name}]")
