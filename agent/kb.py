"""Loads the accelerator catalog (chips, instance types, regions) from disk: built-ins plus operator files.

The built-in facts live in ``policies/data/*.yaml``. An operator adds or overrides entries (a new chip,
a private instance type, a colo region) with extra catalog files named in ``VEU_CATALOG_FILES``
(``os.pathsep``-separated), merged over the built-ins in order; an entry with an existing id replaces it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import yaml

from agent.packs import PackLoader
from policies.catalog import Catalog, CatalogDataError

DATA_DIR = Path(__file__).resolve().parent.parent / "policies" / "data"
BUILTIN_FILES = ("accelerators.yaml", "instance_types.yaml", "regions.yaml", "zones.yaml")


class CatalogLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The packs' YAML 1.2 float rules (1e26 is a float) on libyaml's parser: the catalog is read at every start."""


CatalogLoader.yaml_implicit_resolvers = {k: list(v) for k, v in PackLoader.yaml_implicit_resolvers.items()}


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogDataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise CatalogDataError(f"{path}: cannot read catalog file ({exc.strerror or exc})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=CatalogLoader)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise CatalogDataError(f"{path}: not valid {kind}: {str(exc).splitlines()[0]}") from None


def catalog_files_from_env() -> tuple[Path, ...]:
    raw = os.environ.get("VEU_CATALOG_FILES", "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p.strip())


def load_catalog(extra_files: tuple[Path, ...] = ()) -> Catalog:
    """Built-in catalog files, then ``extra_files`` in order; every file is validated before any is used."""
    docs = [(str(DATA_DIR / name), _read(DATA_DIR / name)) for name in BUILTIN_FILES]
    docs += [(str(p), _read(p)) for p in extra_files]
    return Catalog.from_data(*docs)


@lru_cache(maxsize=8)
def _cached(files: tuple[Path, ...]) -> Catalog:
    return load_catalog(files)


def catalog() -> Catalog:
    """The catalog for this process: built-ins plus ``VEU_CATALOG_FILES`` (cached per file list)."""
    return _cached(catalog_files_from_env())
