"""Reading the object a controller ownerReference names: metering and the Kueue check follow pods' and
Workloads' owners to the job the webhook decided."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def owner_path(ref: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """(group, version, plural, name) of an ownerReference's object; None for a core kind (a Pod, a Node) or a
    malformed reference, which the custom-objects API cannot read."""
    group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
    kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
    if not (group and version and kind and name):
        return None
    return group, version, kind.lower() + "s", name


def get_owner(api: Any, ns: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object ``ref`` names in ``ns`` as stored (``api``: a kubernetes CustomObjectsApi), or None for a
    core kind, a malformed reference, or another object of that name (its uid differs). API errors propagate."""
    path = owner_path(ref)
    if path is None:
        return None
    group, version, plural, name = path
    obj = api.get_namespaced_custom_object(group, version, ns, plural, name)
    if not isinstance(obj, Mapping):
        return None
    uid = (obj.get("metadata") or {}).get("uid")
    if ref.get("uid") and uid and uid != ref.get("uid"):
        return None  # a newer object of the same name, not the one the reference was made for
    return dict(obj)
