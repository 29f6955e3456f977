"""nodes.yaml and the replication policy: which node may hold which document."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.config import load_classification
from kms.domain import Principal
from kms.errors import ConfigError
from kms.network.nodes import NodeSpec, cap_to_node, load_network, node_may_hold, parse_network, user_at_node
from kms.security.access import can_read

LEVELS = load_classification(Path(__file__).resolve().parents[2] / "index_config")
TOKYO = NodeSpec(
    id="mission/jp-tokyo",
    ceiling="confidential",
    units=("mission/jp-tokyo",),
    groups=("asean-desk",),
    users=("visiting.envoy",),
)

# (classification, allow, may Tokyo hold it) — the "does not imply" rows outnumber the others
ROWS = [
    ("public", ["all-staff"], True),
    ("confidential", ["all-staff"], True),
    ("secret", ["all-staff"], False),  # above the ceiling
    ("top_secret", ["unit:mission/jp-tokyo"], False),
    ("internal", ["unit:mission/jp-tokyo"], True),  # its unit
    ("internal", ["unit:mission"], True),  # above its unit: everyone there has it
    ("internal", ["unit:mission/jp-tokyo/consular"], True),  # below its unit: staff there
    ("internal", ["unit:mission/jp-tokyo-annex"], False),  # a prefix, not a parent
    ("internal", ["unit:mission/fr-paris"], False),
    ("internal", ["unit:hq"], False),
    ("internal", ["unit:hq/policy"], False),  # never leaves HQ
    ("internal", ["group:asean-desk"], True),
    ("internal", ["group:europe-desk"], False),
    ("internal", ["user:visiting.envoy"], True),
    ("internal", ["user:alice"], False),  # a user the node config does not list
    ("internal", [], False),  # fail closed
    ("internal", None, False),
    ("internal", "all-staff", False),  # malformed: a string, not a list
    ("internal", ["unit:../x", "allstaff"], False),  # malformed tokens grant nothing
    (None, ["all-staff"], False),
    ("unknown-level", ["all-staff"], False),
    ("public", ["unit:hq/policy", "group:asean-desk"], True),  # any token will do
]


@pytest.mark.parametrize(("level", "allow", "expected"), ROWS)
def test_node_may_hold(level: object, allow: object, expected: bool) -> None:
    assert node_may_hold(TOKYO, LEVELS, level, allow) is expected


UNITS = ["mission", "mission/jp-tokyo", "mission/jp-tokyo/consular", "mission/fr-paris", "hq", "hq/policy"]
TOKENS = [
    "all-staff",
    *(f"unit:{u}" for u in UNITS),
    "group:asean-desk",
    "group:europe-desk",
    "user:visiting.envoy",
    "user:alice",
]


@settings(max_examples=400, deadline=None)
@given(
    level=st.sampled_from(LEVELS.ids),
    allow=st.lists(st.sampled_from(TOKENS), max_size=4),
    clearance=st.sampled_from(LEVELS.ids),
    unit=st.sampled_from(["mission/jp-tokyo", "mission/jp-tokyo/consular"]),
    groups=st.lists(st.sampled_from(["asean-desk"]), max_size=1),
    user=st.sampled_from(["visiting.envoy", "someone"]),
)
def test_a_node_holds_everything_its_people_may_read_within_its_ceiling(
    level: str, allow: list[str], clearance: str, unit: str, groups: list[str], user: str
) -> None:
    """Completeness: whatever someone at the node may read (up to the ceiling), the node may hold."""
    person = Principal(user_id=user, clearance=clearance, unit=unit, groups=tuple(groups))
    document = {"classification": level, "allow": allow}
    capped = cap_to_node(person, TOKYO, LEVELS)
    if can_read(capped, document, LEVELS):
        assert node_may_hold(TOKYO, LEVELS, level, allow)


@settings(max_examples=400, deadline=None)
@given(level=st.sampled_from(LEVELS.ids), allow=st.lists(st.sampled_from(TOKENS), max_size=4))
def test_a_node_holds_only_what_someone_there_could_read(level: str, allow: list[str]) -> None:
    """Soundness: for every document a node may hold, someone at the node could read it."""
    if not node_may_hold(TOKYO, LEVELS, level, allow):
        return
    candidates = [
        Principal(user_id=user, clearance=TOKYO.ceiling, unit=unit, groups=("asean-desk",))
        for user in ("visiting.envoy", "someone")
        for unit in ("mission/jp-tokyo", "mission/jp-tokyo/consular")
    ]
    assert any(can_read(p, {"classification": level, "allow": allow}, LEVELS) for p in candidates)


def test_federation_caps_clearance_and_checks_the_user_belongs_to_the_node() -> None:
    envoy = Principal(user_id="ambassador", clearance="top_secret", unit="mission/jp-tokyo")
    capped = cap_to_node(envoy, TOKYO, LEVELS)
    assert capped.clearance == "confidential" and not capped.is_operator
    assert cap_to_node(Principal.operator(), TOKYO, LEVELS).is_operator is False  # never an operator
    assert user_at_node(envoy, TOKYO)
    assert user_at_node(Principal(user_id="visiting.envoy", clearance="public", unit="hq"), TOKYO)
    assert not user_at_node(Principal(user_id="carol", clearance="public", unit="hq/policy"), TOKYO)
    assert not user_at_node(Principal(user_id="x", clearance="public", unit="mission/jp-tokyo-annex"), TOKYO)


def test_nodes_yaml_is_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ceiling"):
        parse_network({"nodes": [{"id": "mission/x", "ceiling": "ultra"}]}, LEVELS, "t")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_network({"nodes": [{"id": "hq", "ceiling": "public"}]}, LEVELS, "t")
    with pytest.raises(ConfigError, match="invalid node id"):
        parse_network({"nodes": [{"id": "../x", "ceiling": "public"}]}, LEVELS, "t")
    network = parse_network(
        {"nodes": [{"id": "mission/x", "ceiling": "public", "enabled": False, "cert_sha256": "AB:CD"}]},
        LEVELS,
        "t",
    )
    assert network.node("mission/x") is None and network.nodes["mission/x"].cert_sha256 == "abcd"
    assert load_network(tmp_path, LEVELS).nodes == {}  # no file: a network of one
    shipped = load_network(Path(__file__).resolve().parents[2] / "index_config", LEVELS)
    assert shipped.hq == "hq" and "mission/jp-tokyo" in shipped.nodes


def test_a_changed_entry_changes_the_feed_hash() -> None:
    lowered = NodeSpec(
        id=TOKYO.id, ceiling="internal", units=TOKYO.units, groups=TOKYO.groups, users=TOKYO.users
    )
    assert lowered.config_hash() != TOKYO.config_hash()
    assert NodeSpec(**{**TOKYO.__dict__}).config_hash() == TOKYO.config_hash()
