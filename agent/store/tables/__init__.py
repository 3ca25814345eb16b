"""Every table module; importing this package registers all tables on SQLModel.metadata.

Each area owns one module here (core, ledger, cases, caps, audit, ...). New modules are discovered
automatically, so adding a table never means editing a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
