"""Loads policy packs from the package and from operator directories (the one place packs touch disk)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from policies.errors import PackError
from policies.packs import PackRegistry, PolicyPack, parse_pack

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "policies" / "packs"


class PackLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e26 / 2.5e25 as floats (YAML 1.2), as a rule author would expect.

    PyYAML follows YAML 1.1, where ``1.0e26`` (no sign in the exponent) is a *string*; a threshold
    silently becoming a string is exactly the bug a compliance product cannot have.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys: a second `max_share_outside_tier1:` (or `enforced:`) further
        # down a provision silently replaced the first. Keys brought in by a merge (`<<: *anchor`) may be
        # overridden; two written in the same mapping may not.
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first written on line {seen[key].line + 1})",
                    key_node.start_mark)
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        # 2027-02-30 matches YAML's date pattern but is no date: PyYAML raised a bare ValueError (a traceback).
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date ({exc})", node.start_mark) from None


PackLoader.add_constructor("tag:yaml.org,2002:timestamp", PackLoader.construct_yaml_timestamp)


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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where, what, and the construct it was in (PyYAML's own text spans lines)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = ""
    if exc.context:
        cm = exc.context_mark
        at = f" at line {cm.line + 1}, column {cm.column + 1}" if cm is not None and cm is not mark else ""
        context = f" ({exc.context}{at})"
    return f"{where}{exc.problem or ''}{context}"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # json keeps the last of two equal keys, as PyYAML did
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


# The built-in packs are tens of kilobytes. A file of megabytes is no pack (a log, a dump saved under the wrong
# name) and took minutes to parse on every start; aliases repeating an anchor made 500 bytes into billions of
# values, which the value checks walked for ever.
MAX_PACK_BYTES = 4 * 1024 * 1024
MAX_PACK_VALUES = 1_000_000


def _expansion_problem(root: object) -> str | None:
    """Why a loaded document is no pack because of its size or shape once aliases are expanded, or None."""
    count = 0
    on_path: set[int] = set()
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        count += 1
        if count > MAX_PACK_VALUES:
            return (f"it expands to more than {MAX_PACK_VALUES:,} values (YAML aliases repeating an anchor); "
                    "write the values out or use fewer aliases")
        if isinstance(node, dict | list):
            if id(node) in on_path:
                return "a value contains itself (a YAML alias inside its own anchor)"
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in (node.values() if isinstance(node, dict) else node))
    return None


def _read(path: Path) -> object:
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PackError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_PACK_BYTES:
        raise PackError(f"{path}: {size / 1024 / 1024:.1f} MB is larger than a policy pack can be "
                        f"({MAX_PACK_BYTES // 1024 // 1024} MB); is it a pack?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PackError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise PackError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys) if path.suffix == ".json" else load_yaml(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # json.JSONDecodeError is one, and so is a duplicate key
        raise PackError(f"{path}: not valid {kind}: {' '.join(str(exc).split())}") from None
    problem = _expansion_problem(data)
    if problem is not None:
        raise PackError(f"{path}: not a policy pack: {problem}")
    return data


def load_dir(directory: Path) -> list[PolicyPack]:
    if not directory.is_dir():
        raise PackError(f"{directory}: policy pack directory does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml", ".json"} and p.is_file())
    # Validate every file before returning any, so a bad file never leaves a half-loaded set.
    packs = [parse_pack(_read(p), str(p)) for p in files]
    # A later directory's pack replaces an earlier one of the same id (an operator's newer copy). Two in one
    # directory is no such ordering, only the alphabet: a copy left beside the original (`x.yaml`, `x-new.yaml`)
    # would silently decide which rules apply.
    first: dict[str, Path] = {}
    for path, pack in zip(files, packs, strict=True):
        if pack.id in first:
            raise PackError(f"{path}: id: {pack.id!r} is also the id of {first[pack.id].name} in the same directory; "
                            "keep one file per pack id (a later directory in VEU_POLICY_DIRS may replace it)")
        first[pack.id] = path
    return packs


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
