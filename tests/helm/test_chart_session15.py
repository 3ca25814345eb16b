"""Session 15 product changes the chart must follow: OIDC audience required with an issuer, audit signing-key
rotation (retired keys beside the key), VEU_NOTIFY_* only where `veuctl serve` runs the API, and one pack id per
policy directory."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.helm.chart import CHART, NAMESPACE, one, pod_specs, render

SQLITE = {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}}
OIDC = {"issuer": "https://login.example.com/", "audience": "veu-governor-api", "jwksSecret": "veu-oidc-jwks"}


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.validate_schema(values)
        chart.render(values, name="veu", namespace=NAMESPACE, is_install=True)
    return str(err.value)


def _container(objects: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = [(spec, c) for _, spec in pod_specs(objects) for c in spec["containers"] if c["name"] == name]
    assert len(found) == 1, [n for n, _ in pod_specs(objects)]
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- 1. OIDC: an issuer needs an audience (and the key set) -----------------------------------------

@pytest.mark.parametrize("base", [{}, SQLITE])
def test_oidc_values_give_the_api_issuer_audience_and_a_mounted_key_set(base: dict[str, Any]) -> None:
    spec, api = _container(render({**base, "api": {"oidc": OIDC}}), "api")
    env = _env(api)
    assert env["VEU_OIDC_ISSUER"] == OIDC["issuer"]
    assert env["VEU_OIDC_AUDIENCE"] == OIDC["audience"]
    jwks = PurePosixPath(env["VEU_OIDC_JWKS_FILE"])
    mount = next(m for m in api["volumeMounts"] if m["mountPath"] == str(jwks.parent))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "veu-oidc-jwks"
    assert volume["secret"]["items"] == [{"key": "jwks.json", "path": jwks.name}]
    # Only the API reads OIDC settings: the webhook-only container gets none.
    _, webhook = _container(render({**base, "api": {"oidc": OIDC}}), "webhook")
    assert not [n for n in _env(webhook) if n.startswith("VEU_OIDC_")]


@pytest.mark.parametrize(("values", "message"), [
    ({"api": {"oidc": {**OIDC, "audience": ""}}}, "api.oidc.audience is empty"),
    ({"api": {"oidc": {**OIDC, "audience": "  "}}}, "api.oidc.audience is empty"),
    ({"api": {"oidc": {**OIDC, "jwksSecret": ""}}}, "api.oidc.jwksSecret is empty"),
    ({"api": {"extraEnv": [{"name": "VEU_OIDC_ISSUER", "value": "https://login.example.com/"},
                           {"name": "VEU_OIDC_JWKS_FILE", "value": "/x/jwks.json"}]}},
     "VEU_OIDC_ISSUER without VEU_OIDC_AUDIENCE"),
])
def test_an_oidc_issuer_without_audience_or_key_set_fails_the_render(values: dict[str, Any], message: str) -> None:
    assert message in _render_error(values)


def test_values_and_readme_never_show_an_issuer_without_an_audience() -> None:
    for path in [CHART / "values.yaml", CHART / "README.md", *sorted((CHART / "ci").glob("*.yaml"))]:
        text = path.read_text()
        for marker, audience in (("VEU_OIDC_ISSUER", "VEU_OIDC_AUDIENCE"), ("issuer: https", "audience:")):
            if marker in text:
                assert audience in text, f"{path.name} shows {marker} without {audience}"
    values = (CHART / "values.yaml").read_text()
    assert "audience: veu-governor-api" in values  # the example in the api.oidc comment
    assert "api.oidc.audience" in (CHART / "README.md").read_text()


# --- 2. audit signing key rotation: <key>.retired.pub beside the key --------------------------------

@pytest.mark.parametrize("base", [{}, SQLITE])
def test_a_retired_keys_file_in_the_signing_secret_lands_beside_the_key(base: dict[str, Any]) -> None:
    objects = render({**base, "signingKey": {"existingSecret": "veu-signing-key", "key": "audit.pem"}})
    checked = 0
    for where, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            key_file = _env(c).get("VEU_SIGNING_KEY_FILE")
            if not key_file:
                continue
            key = PurePosixPath(key_file)
            assert key.name == "audit.pem"
            mounts = [m for m in c["volumeMounts"] if m["mountPath"] == str(key.parent)]
            assert len(mounts) == 1, (where, c["name"])
            # A subPath mount or an items list would expose only the key: `audit.pem.retired.pub` must be a Secret
            # key that shows up as a file in the same directory.
            assert "subPath" not in mounts[0], (where, c["name"])
            secret = volumes[mounts[0]["name"]]["secret"]
            assert secret["secretName"] == "veu-signing-key"
            assert "items" not in secret, (where, c["name"])
            checked += 1
    assert checked >= 3


def test_readme_documents_the_rotation_procedure() -> None:
    readme = (CHART / "README.md").read_text()
    assert "## Rotating the audit signing key" in readme
    section = readme.split("## Rotating the audit signing key", 1)[1]
    for needed in ("keygen --rotate", "<signingKey.key>.retired.pub", "signing-key.pem.retired.pub",
                   "/etc/veu-governor/signing"):
        assert needed in section, needed
    assert ".retired.pub" in (CHART / "values.yaml").read_text()


# --- 3. VEU_NOTIFY_* only where the API server runs -------------------------------------------------

@pytest.mark.parametrize("base", [{}, SQLITE])
def test_notify_settings_reach_only_the_api_container(base: dict[str, Any]) -> None:
    objects = render({**base, "api": {"extraEnv": [{"name": "VEU_NOTIFY_SCHEDULER", "value": "1"}]}})
    for where, spec in pod_specs(objects):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            has = [n for n in _env(c) if n.startswith("VEU_NOTIFY_")]
            assert has == (["VEU_NOTIFY_SCHEDULER"] if c["name"] == "api" else []), (where, c["name"])
            if c["name"] == "webhook":
                assert "--webhook-only" in c["args"]


def test_docs_say_notify_settings_belong_to_the_api() -> None:
    assert "`VEU_NOTIFY_*`" in (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["api"]["extraEnv"] == [] and "VEU_NOTIFY_*" in (CHART / "values.yaml").read_text()


# --- 4. one pack id per policy directory -------------------------------------------------------------

SITE = "id: site-overrides\nversion: '1'\ntitle: Site\nprovisions: []\n"


@pytest.mark.parametrize(("values", "message"), [
    ({"policyPacks": {"10-site.yaml": SITE, "20-site-new.yaml": SITE}},
     "policyPacks.20-site-new.yaml: pack id \"site-overrides\" is also the id of policyPacks.10-site.yaml"),
    ({"policyPacks": {"10-site.json": '{"id": "site-overrides"}', "20-site.yaml": SITE}},
     "pack id \"site-overrides\" is also the id of policyPacks.10-site.json"),
    ({"policyPacks": {"10-mine.yaml": "id: helm-values\n"}}, "is also the id of 00-helm-admission-settings.yaml"),
    ({"policyPacks": {"00-helm-admission-settings.yaml": SITE}}, "that file name is the chart's own pack"),
])
def test_two_packs_with_one_id_in_the_chart_directory_fail_the_render(values: dict[str, Any], message: str) -> None:
    assert message in _render_error(values)


def test_distinct_pack_ids_and_the_chart_pack_id_without_manage_pack_render() -> None:
    objects = render({"admission": {"managePack": False},
                      "policyPacks": {"10-mine.yaml": "id: helm-values\n", "20-site.yaml": SITE}})
    data = one(objects, "ConfigMap", "-policies")["data"]
    ids = [yaml.safe_load(text)["id"] for text in data.values()]
    assert sorted(ids) == ["helm-values", "site-overrides"]
    # Default: the chart's pack and a user pack, every id once.
    data = one(render({"policyPacks": {"10-site.yaml": SITE}}), "ConfigMap", "-policies")["data"]
    ids = [yaml.safe_load(text)["id"] for text in data.values()]
    assert len(ids) == len(set(ids)) == 2


def test_values_document_one_pack_id_per_directory() -> None:
    assert "each file needs its own pack `id`" in (CHART / "values.yaml").read_text()
