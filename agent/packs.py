"""Loads policy packs from the package and from operator directories (the one place packs touch disk)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import yaml

from policies.errors import PackError
from policies.packs import PackRegistry, PolicyPack, parse_pack

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "policies" / "packs"


class PackLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e26 / 2.5e25 as floats (YAML 1.2), as a rule author would expect.

    PyYAML follows YAML 1.1, where ``1.0e26`` (no sign in the exponent) is a *string*; a threshold
    silently becoming a string is exactly the bug a compliance product cannot have.
    """


# YAML 1.1 also reads yes/no/on/off as booleans: Norway's ISO code NO silently became False and dropped
# out of Tier 1. Only true/false are booleans here (YAML 1.2 core schema).
PackLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
PackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> object:
    return yaml.load(text, Loader=PackLoader)


def _read(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PackError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None


def load_dir(directory: Path) -> list[PolicyPack]:
    if not directory.is_dir():
        raise PackError(f"{directory}: policy pack directory does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml", ".json"} and p.is_file())
    # Validate every file before returning any, so a bad file never leaves a half-loaded set.
    return [parse_pack(_read(p), str(p)) for p in files]


def pack_dirs_from_env() -> tuple[Path, ...]:
    raw = os.environ.get("VEU_POLICY_DIRS", "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p.strip())


def load_registry(extra_dirs: Iterable[Path] = ()) -> PackRegistry:
    packs = load_dir(BUILTIN_DIR)
    for d in extra_dirs:
        packs.extend(load_dir(Path(d)))
    return PackRegistry(packs)


@lru_cache(maxsize=8)
def _cached(dirs: tuple[Path, ...]) -> PackRegistry:
    return load_registry(dirs)


def registry() -> PackRegistry:
    """The registry for this process: built-in packs plus ``VEU_POLICY_DIRS`` (cached)."""
    return _cached(pack_dirs_from_env())
