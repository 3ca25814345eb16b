"""Session 21: one figure, the same everywhere (over HTTP against the app, no browser).

- The models page wrote a lineage total with three decimals ("%.3e"): 9.9996e25 operations, below the 10^26 of
  ECCN 4E091, read "1.000e+26" beside "below-threshold", where the CLI and the API's explanation say 9.9996e25.
  The controls register's ¶7 table did the same; the cases page wrote its threshold "1.0e+26" beside an estimate
  "1.1e26". They now write operations as the CLI does (``policies.compute.sci``).
- The model-ledger PDF rounded the same total to four figures ("1e+26"), and its share of the threshold to "1".
- The PDF tables printed identifiers as quantities (holding 2,015, run 1,234), where the dashboard, the CLI and the
  CSV write #2015 / 2015.
- The deadlines page sent a user of an empty store to ``veuctl deadlines authorization`` (the command is
  ``authorize``), and always named ``GET /api/v1/deadlines?status=overdue`` as "the same list", on every tab and
  date.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

NEAR = 9.9996e25  # below 10^26 by 4 in 10^5: far more than the 1e-9 taken as the same figure


def _app(url: str, key: Path) -> Iterator[TestClient]:
    from agent.api.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        mp.setenv("VEU_SIGNING_KEY_FILE", str(key))
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.demo import seed

    work = Path(tmp_path_factory.mktemp("s21"))
    url = f"sqlite:///{work / 'demo.db'}"
    seed(url)
    yield from _app(url, work / "signing.key")


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = Path(tmp_path_factory.mktemp("s21-empty"))
    yield from _app(f"sqlite:///{work / 'empty.db'}", work / "signing.key")


@pytest.fixture(scope="module")
def near(client: TestClient) -> str:
    """A model whose lineage total is just below the 4E091 threshold."""
    r = client.post("/api/v1/models", json={"name": "near-threshold-1", "owner": "Lumen Analytics Pte"})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/models/near-threshold-1/runs", json={"operations": NEAR, "start": "2026-01-01",
                                                                  "end": "2026-02-01", "site": "iad-dc1"})
    assert r.status_code == 201, r.text
    return "near-threshold-1"


def _row(html: str, name: str) -> str:
    m = re.search(r"<tr><td>" + re.escape(name) + r"</td>.*?</tr>", html, re.S)
    assert m, f"no row for {name}"
    return re.sub(r"<[^>]+>", " ", m.group(0))


def test_the_models_page_writes_a_total_below_the_threshold_as_the_cli_does(client: TestClient, near: str) -> None:
    from policies.compute import sci, sci_apart

    api = client.get(f"/api/v1/models/{near}").json()
    assert api["status"] == "below-threshold", api
    cli = sci_apart(api["cumulative_operations"], api["threshold"])[0]  # what `veuctl models list/show` prints
    assert cli == "9.9996e25"
    row = _row(client.get("/models").text, near)
    assert "below-threshold" in row
    assert cli in row.split(), row
    assert "1.000e+26" not in row, f"a total below 10^26 reads as 10^26: {row}"
    assert sci(api["threshold"]) in row.split(), row  # the threshold as the CLI writes it (1e26)


def test_the_controls_register_writes_a_runs_operations_as_the_cli_does(client: TestClient, near: str) -> None:
    page = client.get("/controls/site/iad-dc1").text
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", page, re.S) if "ledger-run-" in r and near in r]
    assert len(rows) == 1, "the run at iad-dc1 of a party outside Tier 1 is listed under ¶7"
    cells = re.sub(r"<[^>]+>", " ", rows[0]).split()
    assert "9.9996e25" in cells and "1.000e+26" not in cells, cells


def test_the_cases_page_writes_the_threshold_as_it_writes_the_estimate(client: TestClient) -> None:
    from policies.compute import sci

    cases = client.get("/api/v1/cases").json()
    assert cases, "the demo has open cases"
    page = re.sub(r"<[^>]+>", "", client.get("/cases").text)
    for c in cases:
        shown = f"{c['estimate_text']} operations (threshold {sci(c['threshold'])})"
        assert shown in page, (shown, c)


def _pdf_text(client: TestClient, kind: str, tmp_path: Path) -> str:
    from agent.store.tables.core import utc_today

    to = utc_today()
    r = client.get(f"/exports/{kind}/download", params={"from": f"{to.year}-01-01", "to": to.isoformat(),
                                                        "format": "pdf"})
    assert r.status_code == 200, r.text[:500]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        pdf = next(n for n in z.namelist() if n.endswith(".pdf"))
        z.extract(pdf, tmp_path)
    return subprocess.run(["pdftotext", "-raw", str(tmp_path / pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_the_model_ledger_pdf_never_rounds_a_total_onto_the_threshold(client: TestClient, near: str,
                                                                      tmp_path: Path) -> None:
    text = _pdf_text(client, "model-ledger", tmp_path)
    line = next(x for x in text.splitlines() if x.startswith(near + " "))
    assert "below-threshold" in line, line
    assert "9.9996e25" in line.split(), f"the CLI's figure for the total: {line}"
    assert "1e+26" not in line.split()[:6], f"a total below 10^26 printed as 10^26: {line}"
    assert "0.99996" in line.split(), f"its share of the threshold printed as 1: {line}"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_pdf_tables_print_identifiers_as_the_dashboard_does(client: TestClient, tmp_path: Path) -> None:
    text = _pdf_text(client, "installed-base", tmp_path)
    ids = re.findall(r"^(\S+) demo \S+ \S+ [A-Z]{2} ", text, re.M)  # holding_id source external_id site country
    assert ids, text[:3000]
    assert not [i for i in ids if "," in i], f"holding ids printed with thousands separators: {ids[:5]}"
    assert any(int(i) >= 1000 for i in ids), ids[:5]


def test_the_empty_deadlines_page_names_a_command_that_exists(empty: TestClient) -> None:
    import click
    from typer.main import get_command

    from agent.cli import app

    page = empty.get("/deadlines").text
    m = re.search(r"<code>veuctl deadlines (\S+) NAME --granted DATE</code>", page)
    assert m, page
    root = get_command(app)
    ctx = click.Context(root)
    group = root.get_command(ctx, "deadlines")  # type: ignore[attr-defined]
    assert group is not None
    assert group.get_command(ctx, m.group(1)) is not None, f"veuctl deadlines {m.group(1)}: no such command"


@pytest.mark.parametrize("status", ["", "due", "overdue", "upcoming", "done"])
def test_the_deadlines_page_names_the_api_request_for_its_own_list(client: TestClient, status: str) -> None:
    day = "2026-03-01"
    page = client.get("/deadlines", params={"status": status, "as_of": day}).text
    m = re.search(r"<code>GET (/api/v1/deadlines[^<]*)</code> returns the same list", page)
    assert m, page[-3000:]
    shown = [x["key"] for x in client.get(m.group(1).replace("&amp;", "&")).json()]
    listed = re.findall(r'<tr data-key="([^"]+)"', page)
    assert shown == listed, (m.group(1), shown, listed)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
@pytest.mark.parametrize("kind", ["installed-base", "shipments"])
def test_a_pdf_cap_just_over_its_limit_never_reads_as_the_limit(kind: str, tmp_path: Path) -> None:
    """The dashboard writes 7.004% over a 7% cap with the digits that tell them apart (``pct_apart``); the PDF printed
    the share to four figures, "0.07" beside "0.07" and ok false, and a utilisation of 1.00006 as "1"."""
    from datetime import date

    from agent.demo import seed
    from agent.exports import build
    from agent.exports.pdf import write_pdf
    from agent.packs import registry
    from agent.store.db import session_scope
    from agent.store.tables.core import utc_today

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    seed(url)
    to = utc_today()
    with session_scope(url) as s:
        report = build(s, registry(), kind, date(to.year, 1, 1), to)
    caps = next(t for t in report.tables if t.name == "caps")
    over = {"authorization": "aurora-uveu", "kind": "uveu", "holder": "Aurora Compute Inc.",
            "cap": "capSG", "title": "Share in SG", "view": "owned", "binding": True,
            "value": 0.0700042, "limit": 0.07, "headroom_tpp": -1234.5, "utilisation": 1.00006, "ok": False,
            "confirmed": False, "citations": "", "explanation": "", "numerator_tpp": 1.0, "denominator_tpp": 1.0}
    row = [over.get(c, "") for c in caps.columns]
    caps.rows = lambda: iter([row])
    report.tables = [caps]
    write_pdf(report, tmp_path / "r.pdf", {})
    text = subprocess.run(["pdftotext", "-raw", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    line = next(x for x in text.splitlines() if "capSG" in x)
    cells = line.split()
    assert "0.0700042" in cells and "1.00006" in cells, line


def test_the_overview_counts_one_cap_as_one_cap(client: TestClient) -> None:
    caps = client.get("/api/v1/caps").json()["authorizations"]
    single = [a for a in caps if len(a["caps"]) == 1]
    assert single, "the demo's NVEU has one cap"
    page = client.get("/").text
    assert "(1 caps)" not in page
    assert "All views, including non-binding ones (1 cap)" in page


def test_the_footer_says_what_each_page_s_figures_are(client: TestClient) -> None:
    """'Figures are exact TPP sums from the inventory' is the caps pages' footer, not that of pages with no TPP sum."""
    tpp_note = "exact TPP sums from the inventory"
    assert tpp_note in client.get("/").text
    for page in ("/models", "/cases", "/shipments", "/deadlines", "/exports"):
        html = client.get(page).text
        footer = html[html.index("<footer>"):]
        assert tpp_note not in footer and "Not legal advice." in footer, page


def test_the_shipments_page_shows_an_authorization_as_one_not_as_the_reference(client: TestClient) -> None:
    """A shipment via a Data Center VEU with no reference read its authorization's name in the Reference column,
    where the CLI and the API show an empty reference beside the authorization."""
    rows = client.get("/api/v1/shipments").json()
    rows = rows["items"]
    via_auth = [r for r in rows if r.get("authorization") and not r.get("reference")]
    assert via_auth, "the demo records a VEU shipment without a reference"
    html = client.get("/shipments").text
    assert f"authorization {via_auth[0]['authorization']}" in html
