"""GCP TPU VMs of the machine types the catalog lacked (session 21c) are counted and the project is complete.

Before: ct5l-hightpu-* (TPU v5e single-host), ct3-hightpu-4t / ct3p-hightpu-4t (TPU v3) and tpu7x-ultranet-4t
were unknown accelerator machine types, so the GCP collector left each VM uncounted and the project partial
(see tests/inventory/test_collectors_qa_session21b.py). Sources: tests/catalog/test_gcp_tpu_machine_types_session21c.py.
"""

from __future__ import annotations

from sqlmodel import select

from agent.inventory import sync
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.gcpfake import gcp_collector as _gcp


def test_tpu_vms_of_the_new_machine_types_are_counted_and_the_project_is_complete(gce: ComputeFake, store: str) -> None:
    want = {
        "ct5l-hightpu-1t": ("tpu-v5e", 1.0), "ct5l-hightpu-4t": ("tpu-v5e", 4.0), "ct5l-hightpu-8t": ("tpu-v5e", 8.0),
        "ct3-hightpu-4t": ("tpu-v3", 4.0), "ct3p-hightpu-4t": ("tpu-v3", 4.0), "tpu7x-ultranet-4t": ("tpu-v7", 4.0),
    }
    gce.instances["ml"] = [instance("ml", f"vm-{i}", "us-east5-a", t, iid=i) for i, t in enumerate(want, start=1)]
    summary = sync(_gcp(gce, "ml"), store)
    scope = summary.as_dict()["scopes"][0]
    assert summary.status == "ok" and scope["complete"] is True, summary.as_dict()
    with session_scope(store) as s:
        live = {h.external_id: (h.accelerator, h.count)
                for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711
    assert live == {f"ml/{i}": want[t] for i, t in enumerate(want, start=1)}
