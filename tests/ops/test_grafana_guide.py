"""docs/grafana.md covers the dashboard as it is: every panel with its exact queries, what normal
looks like and what to do when red; collector-only panels say so; every alert is listed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "grafana.md"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "voicetrace.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def sections() -> dict[str, str]:
    """`### title` → its text, up to the next heading."""
    text = GUIDE.read_text()
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_panel_has_a_section_with_its_exact_queries_normal_and_red():
    guide = sections()
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        section = guide.get(panel["title"])
        assert section is not None, f"no section for {panel['title']!r}"
        blocks = "\n".join(re.findall(r"```promql\n(.*?)```", section, flags=re.DOTALL))
        for target in panel["targets"]:
            assert target["expr"] in blocks.splitlines(), (panel["title"], target["expr"])
        assert "**Normal:**" in section and "**When red:**" in section, panel["title"]
        collector_only = panel.get("description", "").startswith("Collector-only:")
        assert ("**Collector-only.**" in section) == collector_only, panel["title"]


def test_the_guide_has_no_section_for_a_panel_that_is_gone():
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    extra = set(sections()) - titles - {"Where the series come from", "Alerts"}
    assert not extra


def test_every_alert_rule_is_in_the_guide():
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = sections()["Alerts"]
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"`{rule['alert']}`" in alerts, rule["alert"]
