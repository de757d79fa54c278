"""Policy files: the issue's examples validate as written; bad files give clear errors."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.cleanup import reference
from pipelines.cleanup.examples import SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE
from pipelines.cleanup.policies import (
    PolicyError,
    check_file,
    check_text,
    format_duration,
    load_policies,
    parse_duration,
)
from pipelines.settings import PROJECT_ROOT

GOOD = """\
policies:
  - name: ok-policy
    description: fine
    match: {bucket: amazon-braket-qml}
    action: cancel
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "p.yaml").problems]


def test_the_issues_examples_are_valid_as_written():
    sandbox = check_text(SANDBOX_EXAMPLE)
    assert sandbox.ok, sandbox.problems
    (policy,) = sandbox.policies
    assert policy.mode == "enforce" and policy.action == "cancel"
    assert policy.match.regions == ["us-west-1"]
    assert policy.match.statuses == ["QUEUED"]
    assert policy.match.min_age == timedelta(hours=24)
    assert policy.exempt.tags == {"keep": "true"}
    assert policy.limits.max_cancellations == 50 and policy.limits.max_percent == 100

    cap = check_text(SHOT_CAP_EXAMPLE)
    assert cap.ok, cap.problems
    (policy,) = cap.policies
    assert policy.when.queued_shots_at_least == 50 and policy.mode == "dry-run"
    assert policy.limits.max_cancellations == 100  # the default


def test_the_projects_policy_file_is_valid():
    policies = load_policies(PROJECT_ROOT / "policies.yaml")
    assert [p.name for p in policies] == ["sandbox-cleanup", "daily-shot-cap"]


def test_defaults():
    (policy,) = check_text(GOOD).policies
    assert policy.mode == "dry-run"
    assert policy.match.statuses == ["CREATED", "QUEUED"]
    assert policy.exempt.tags == {} and policy.when is None


def test_duplicate_key_names_file_line_policy_and_field():
    text = SANDBOX_EXAMPLE.replace(
        '      prefix: "Sandbox"\n', '      prefix: "Sandbox"\n      bucket: other\n'
    )
    (message,) = problems(text)
    assert message == (
        "p.yaml:10: policy 'sandbox-cleanup': field match.bucket: "
        "duplicate key 'bucket' (first at line 8)"
    )


def test_duplicate_top_level_and_policy_keys():
    assert problems("policies: []\npolicies: []\n") == [
        "p.yaml:2: field policies: duplicate key 'policies' (first at line 1)"
    ]
    text = GOOD + "    mode: enforce\n    mode: dry-run\n"
    assert problems(text) == [
        "p.yaml:7: policy 'ok-policy': field mode: duplicate key 'mode' (first at line 6)"
    ]


def test_unknown_keys_are_errors_that_list_the_allowed_ones():
    (message,) = problems(GOOD.replace("match: {bucket", "match: {colour: red, bucket"))
    assert message.startswith("p.yaml:4: policy 'ok-policy': field match.colour: unknown key")
    assert "allowed keys: regions, devices, statuses" in message
    (message,) = problems(GOOD + "    schedule: hourly\n")
    assert "p.yaml:6: policy 'ok-policy': field schedule: unknown key 'schedule'" in message
    assert "allowed keys: name, description, match" in message
    (message,) = problems(GOOD + "settings: {}\n")
    assert message == "p.yaml:6: unknown top-level key 'settings'; the only key is `policies`"


def test_a_status_that_is_not_cancellable():
    (message,) = problems(SANDBOX_EXAMPLE.replace("[QUEUED]", "[QUEUED, RUNNING]"))
    assert message == (
        "p.yaml:7: policy 'sandbox-cleanup': field match.statuses[1]: "
        "RUNNING is not cancellable: statuses may only be CREATED and/or QUEUED"
    )
    assert (
        "match.statuses: List should have at least 1 item"
        in problems(GOOD.replace("{bucket", "{statuses: [], bucket"))[0]
    )


def test_a_file_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    (problem,) = check_file(path).problems
    assert str(problem).startswith(f"{path}: cannot read: not UTF-8 text")


def _alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A policy whose match holds a "billion laughs": each anchor a list of `width` aliases
    of the one before, `width ** levels` values once expanded (10**9 here) in a few lines.
    Walked value by value, as the duplicate-key check did, it takes many minutes."""
    lines = [
        "policies:",
        "  - name: laughs",
        "    description: x",
        "    action: cancel",
        "    match:",
        "      bucket: b",
        f"      l0: &l0 [{', '.join(['lol'] * width)}]",
    ]
    for i in range(1, levels):
        lines.append(f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_naming_the_file_and_line(tmp_path):
    """The duplicate-key check walked every aliased list again (minutes for this file, and the
    cleanup sensor loads it every tick); now each node is walked once, and a document that
    expands past MAX_VALUES values is refused before anything else walks it."""
    path = tmp_path / "laughs.yaml"
    path.write_text(_alias_bomb())
    (problem,) = check_file(path).problems
    # l4 is the first anchor past 100,000 values (10**5 strings and its lists).
    assert str(problem) == (
        f"{path}:11: refused: its aliases (`*name`) expand the document past 100,000 values "
        "(a YAML alias bomb?); write the values out or nest fewer aliases"
    )
    with pytest.raises(PolicyError, match="alias bomb"):
        load_policies(path)


def test_aliases_within_the_limit_are_read_as_written():
    """Shared anchors are walked once, and a duplicate key inside one is reported once."""
    text = _alias_bomb(levels=3, width=4).replace("l0: &l0 [", "l0: &l0 [{k: 1, k: 2}, ")
    assert problems(text) == [
        "p.yaml:7: policy 'laughs': field match.l0[0].k: duplicate key 'k' (first at line 7)"
    ]
    text = _alias_bomb(levels=3, width=4)
    assert [p.field for p in check_text(text).problems] == ["match.l0", "match.l1", "match.l2"]


def test_a_tagged_merge_cannot_double_at_every_level():
    """PyYAML's own merge (still used under `!!set`) copies `<<: [*a, *a]` twice per level:
    these 22 lines made 4 million entries (seconds, half a GB); a few more, all memory."""
    lines = ["x0: &x0 !!set {a: null, b: null}"]
    lines += [f"x{i}: &x{i} !!set {{<<: [*x{i - 1}, *x{i - 1}]}}" for i in range(1, 22)]
    (message, *_) = problems("\n".join(lines) + "\n")
    assert message.startswith("p.yaml:2: YAML error, column 16: could not determine a construc")


def test_merge_keys_merge_and_explicit_keys_win():
    """`<<: *defaults` then `name:` is YAML's merge, not a duplicate `name`."""
    text = GOOD + (
        "  - <<: *base\n"
        "    name: second\n"
        "    mode: enforce\n"
        "    match: {<<: *m, prefix: Sandbox}\n"
        "  - <<: [{description: first listed wins, limits: *lim}, *base]\n"
        "    name: third\n"
    )
    text = text.replace("  - name: ok-policy", "  - &base\n    name: ok-policy")
    text = text.replace("match: {bucket", "match: &m {bucket")
    text = text.replace(
        "action: cancel\n", "action: cancel\n    limits: &lim {max_cancellations: 5}\n", 1
    )
    check = check_text(text)
    assert check.ok, check.problems
    first, second, third = check.policies
    assert (first.name, first.mode, first.limits.max_cancellations) == ("ok-policy", "dry-run", 5)
    assert (second.name, second.mode, second.description) == ("second", "enforce", "fine")
    assert (second.match.bucket, second.match.prefix) == ("amazon-braket-qml", "Sandbox")
    assert first.match.prefix is None, "the anchor itself is unchanged"
    assert (third.name, third.description) == ("third", "first listed wins")
    assert (third.limits.max_cancellations, third.match.bucket) == (5, "amazon-braket-qml")


def test_a_bad_merged_value_is_reported_where_it_is_written():
    text = GOOD.replace("  - name: ok-policy", "  - &base\n    name: ok-policy")
    text = text.replace("action: cancel", "action: delete")
    text += "  - <<: *base\n    name: second\n"
    assert [p for p in problems(text) if "second" in p] == [
        "p.yaml:6: policy 'second': field action: Input should be 'cancel' (got 'delete')"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("  - <<: cancel\n", "p.yaml:3: YAML error, column 9: `<<` (a merge key) takes a "),
        ("  - <<: [{name: a}, 3]\n", "p.yaml:3: YAML error, column 21: `<<` (a merge key) "),
        (
            "  - <<: {name: a}\n    <<: {name: b}\n",
            "p.yaml:4: policy 'a': field <<: duplicate key '<<' (first at line 3)",
        ),
        (
            "  - <<: {name: a, name: b}\n",
            "p.yaml:3: policy 'a': field name: duplicate key 'name' (first at line 3)",
        ),
    ],
)
def test_a_bad_merge_is_an_error_with_its_line(text, says):
    (message,) = problems("policies:\n" + text.replace("  - ", "  - description: x\n    ", 1))
    assert message.startswith(says)


def test_yaml_nested_too_deeply_is_a_problem_not_a_crash():
    assert problems("policies: " + "[" * 2000 + "]" * 2000) == [
        "p.yaml: YAML nested too deeply (lists or mappings in hundreds of levels)"
    ]


@pytest.mark.parametrize("value", ["24 hours", "3600", "1y", "-2d", "h", "''"])
def test_a_bad_min_age(value):
    (message,) = problems(SANDBOX_EXAMPLE.replace("min_age: 24h", f"min_age: {value}"))
    assert message.startswith("p.yaml:10: policy 'sandbox-cleanup': field match.min_age: ")
    assert "is not a duration: use a number and a unit (s, m, h, d, w)" in message


def test_a_min_age_too_long_for_a_timedelta_is_a_field_error():
    """OverflowError from timedelta crashed validate."""
    (message,) = problems(SANDBOX_EXAMPLE.replace("min_age: 24h", "min_age: 99999999999w"))
    assert message.startswith("p.yaml:10: policy 'sandbox-cleanup': field match.min_age: ")
    assert "'99999999999w' is longer than any task could be old" in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("2d", 172800), ("1w", 604800), ("1d12h", 129600), ("90s", 90)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_yaml_syntax_error_names_the_line():
    text = SANDBOX_EXAMPLE.replace('devices: ["arn:aws:braket:*::device/qpu/*"]', "devices: [arn")
    (message,) = problems(text)
    assert message.startswith("p.yaml:")
    assert "YAML syntax error" in message and "started at line 6" in message
    (message,) = problems("policies:\n  - name: x\n   description: bad indent\n")
    assert message.startswith("p.yaml:3: YAML syntax error")


def test_structure_errors():
    assert problems("") == ["p.yaml: the file is empty; expected `policies:`"]
    assert problems("- a\n") == ["p.yaml:1: expected a mapping with the key `policies` at the top"]
    assert problems("policy: []\n")[-1] == "p.yaml:1: `policies:` is missing"
    assert problems("policies: {a: 1}\n") == ["p.yaml:1: `policies` must be a list of policies"]
    assert problems("policies:\n  - just a string\n") == [
        "p.yaml:2: policy '#1': a policy must be a mapping"
    ]
    assert check_text("policies:\n").ok  # no policies is valid: the sensor skips


def test_missing_and_wrong_values():
    text = GOOD.replace("    action: cancel\n", "    mode: always\n")
    assert problems(text) == [
        "p.yaml:2: policy 'ok-policy': field action: required key missing",
        "p.yaml:5: policy 'ok-policy': field mode: "
        "Input should be 'dry-run' or 'enforce' (got 'always')",
    ]
    (message,) = problems(GOOD.replace("action: cancel", "action: delete"))
    assert "field action: Input should be 'cancel'" in message
    (message,) = problems(GOOD.replace("name: ok-policy", "name: has spaces"))
    assert "policy 'has spaces': field name: String should match pattern" in message


def test_meaning_checks():
    assert problems(GOOD + GOOD.replace("policies:\n", ""))[0] == (
        "p.yaml:6: policy 'ok-policy': field name: duplicate policy name (first at line 2)"
    )
    (message,) = problems(GOOD.replace("match: {bucket: amazon-braket-qml}", "match: {}"))
    assert "field match: match selects every cancellable task of the account" in message
    (message,) = problems(GOOD.replace("{bucket", "{min_shots: 10, max_shots: 5, bucket"))
    assert "min_shots 10 is above max_shots 5" in message
    text = GOOD.replace("{bucket", "{created_after: 2026-02-01, created_before: 2026-01-01, bucket")
    assert "created_after must be before created_before" in problems(text)[0]
    (message,) = problems(GOOD + "    when: {}\n")
    assert "field when: give queued_shots_at_least, queued_cost_usd_at_least or both" in message
    (message,) = problems(GOOD + "    limits: {max_percent: 150}\n")
    assert "field limits.max_percent: Input should be less than or equal to 100" in message
    (message,) = problems(GOOD.replace("{bucket: amazon-braket-qml}", "{regions: [mars-1]}"))
    assert "field match.regions[0]: 'mars-1' is not a Braket region" in message
    (message,) = problems(GOOD.replace("{bucket: amazon-braket-qml}", "{devices: [Cepheus]}"))
    assert "field match.devices[0]: 'Cepheus' is not a device ARN glob" in message


@pytest.mark.parametrize(
    ("section", "line", "field"),
    [
        ("    when:\n    #  queued_shots_at_least: 50\n", 6, "when"),
        ("    exempt:\n      tags:\n", 7, "exempt.tags"),
        ("    limits:\n      max_cancellations:\n", 7, "limits.max_cancellations"),
    ],
)
def test_a_key_left_without_a_value_is_an_error_not_a_missing_key(section, line, field):
    """YAML reads `when:` with its condition commented out as null; taken as "no `when`",
    the policy would cancel every matched task instead of only the groups over the cap."""
    assert problems(GOOD + section) == [
        f"p.yaml:{line}: policy 'ok-policy': field {field}: no value: give one or remove the key"
    ]


def test_a_match_filter_left_without_a_value_is_an_error():
    """Taken as "no filter", `tags:` with nothing after it would widen the match."""
    text = GOOD.replace(
        "match: {bucket: amazon-braket-qml}", "match:\n      bucket: b\n      tags:"
    )
    assert problems(text) == [
        "p.yaml:6: policy 'ok-policy': field match.tags: no value: give one or remove the key"
    ]


def test_every_problem_of_every_policy_is_reported_and_the_file_refused(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        GOOD
        + "  - name: second\n    description: x\n    action: cancel\n"
        + "    match: {statuses: [RUNNING], min_age: soon}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert [(p.policy, p.field) for p in caught.value.problems] == [
        ("second", "match.statuses[0]"),
        ("second", "match.min_age"),
    ]
    assert all(str(path) in line for line in str(caught.value).splitlines())
    check = check_text(path.read_text())
    assert [p.name for p in check.policies] == ["ok-policy"]


def test_values_yaml_reads_as_other_types():
    text = GOOD.replace(
        "{bucket: amazon-braket-qml}", "{bucket: amazon-braket-qml, created_after: 2026-01-02}"
    )
    (policy,) = check_text(text).policies
    assert policy.match.created_after == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "says"),
    [("2026-13-01", "month value is outside"), ("2026-02-30", "day value is outside")],
)
def test_an_unquoted_date_that_is_no_date_is_a_field_error_not_a_crash(value, says):
    """PyYAML's own date constructor raises a bare ValueError on these."""
    text = GOOD.replace(
        "{bucket: amazon-braket-qml}", f"{{bucket: amazon-braket-qml, created_after: {value}}}"
    )
    (message,) = problems(text)
    assert message.startswith("p.yaml:4: policy 'ok-policy': field match.created_after:")
    assert says in message and repr(value) in message


@pytest.mark.parametrize("value", ["yes", "true", "on", "1.10", "017"])
def test_an_unquoted_tag_value_yaml_reads_as_another_type_is_an_error(value):
    """`keep: yes` would otherwise become 'true' and stop protecting tasks tagged keep=yes."""
    text = GOOD + f"    exempt:\n      tags: {{keep: {value}}}\n"
    (message,) = problems(text)
    assert message.startswith("p.yaml:7: policy 'ok-policy': field exempt.tags: tag 'keep'")
    assert "quote it" in message
    (policy,) = check_text(text.replace(f"keep: {value}", f'keep: "{value}"')).policies
    assert policy.exempt.tags == {"keep": value}


@pytest.mark.parametrize(
    ("match", "field", "says"),
    [
        ("{regions: []}", "match.regions", "at least 1 item"),
        ("{devices: []}", "match.devices", "at least 1 item"),
        ("{tags: {}}", "match.tags", "at least 1 item"),
        ("{bucket: '*'}", "match", "narrow nothing"),
        ("{bucket: '**', prefix: '?*'}", "match", "narrow nothing"),
        ("{devices: ['arn:aws:braket:*::device/*']}", "match", "narrow nothing"),
        ("{devices: ['arn:aws:braket:*qpu*', 'arn:aws:braket:*simulator*']}", "match", "nothing"),
        ("{regions: [us-east-1, us-west-1, us-west-2, eu-west-2, eu-north-1]}", "match", "every"),
        ("{min_shots: 0, min_age: 0s}", "match", "min_shots 0 or min_age 0 narrow nothing"),
        ("{bucket: 's3://amazon-braket-qml'}", "match.bucket", "is not a bucket name"),
        ("{prefix: Sandbox/}", "match.prefix", "has a '/'"),
        ("{key_prefix: Sandbox/team-a/}", "match.key_prefix", "like 'Sandbox/team-a'"),
        (
            "{devices: ['arn:aws:braket:us-west-1::device/quantum-simulator/*']}",
            "match.devices[0]",
            "simulator ARNs have no region",
        ),
    ],
)
def test_a_match_that_narrows_nothing_or_cannot_match_is_an_error(match, field, says):
    """Empty lists once read as "every region" or "any tags" and selected everything."""
    (message,) = problems(GOOD.replace("{bucket: amazon-braket-qml}", match))
    assert f"field {field}: " in message and says in message


@pytest.mark.parametrize(
    "match",
    [
        "{devices: ['arn:aws:braket:*::device/qpu/*']}",  # QPUs, not simulators
        "{devices: ['arn:aws:braket:*ionq*', 'arn:aws:braket:*iqm*']}",
        "{regions: [us-east-1, us-west-1, us-west-2, eu-west-2]}",
        "{prefix: Sandbox*}",
        "{bucket: 'amazon-braket-*'}",
    ],
)
def test_globs_and_lists_that_leave_some_tasks_out_narrow(match):
    (policy,) = check_text(GOOD.replace("{bucket: amazon-braket-qml}", match)).policies
    assert policy.name == "ok-policy"


def test_max_shots_0_narrows_to_zero_shot_tasks():
    (policy,) = check_text(GOOD.replace("{bucket: amazon-braket-qml}", "{max_shots: 0}")).policies
    assert policy.match.max_shots == 0


def test_a_range_error_names_the_later_field_and_its_line():
    text = GOOD.replace(
        "    match: {bucket: amazon-braket-qml}\n",
        "    match:\n      bucket: b\n      min_shots: 10\n      max_shots: 5\n",
    )
    assert problems(text) == [
        "p.yaml:7: policy 'ok-policy': field match.max_shots: min_shots 10 is above max_shots 5"
    ]


def test_the_docs_reference_is_generated_from_the_schema():
    """docs/policies.md cannot drift from the validator: its field table is rendered here."""
    assert reference.current() == reference.render(), (
        "docs/policies.md is stale: run .venv/bin/python -m pipelines.cleanup.reference"
    )
    text = reference.DOC.read_text()
    for example in (SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE):
        assert example in text  # the documented examples are the ones tested


def test_every_policy_file_in_the_docs_is_valid():
    """The anchors-and-merge-keys example included."""
    blocks = reference.DOC.read_text().split("```yaml\n")[1:]
    files = [block.split("```", 1)[0] for block in blocks]
    assert len(files) >= 3 and any("<<: *" in f for f in files)
    for text in files:
        check = check_text(text)
        assert check.ok and check.policies, (text, check.problems)


GOOD_ARN = "arn:aws:braket:us-east-1:123456789012:quantum-task/0b0e2b4c-6d8e-4f3a-9b1c-2d3e4f5a6b7c"


@pytest.mark.parametrize(
    "arn",
    [
        "0b0e2b4c-6d8e-4f3a-9b1c-2d3e4f5a6b7c",  # the bare task id
        GOOD_ARN.upper().replace("ARN:AWS:BRAKET", "arn:aws:braket"),  # an upper-case id
        GOOD_ARN.replace("us-east-1", "us-east-2"),  # a region without Braket
        GOOD_ARN + " ",
        "arn:aws:braket:us-west-1:123456789012:quantum-task/0b0e2b4c-...",  # a placeholder
    ],
)
def test_an_exempt_arn_that_could_never_match_is_refused(arn):
    """Exempt ARNs are compared exactly: a typo protected nothing, and validate said OK."""
    text = GOOD.replace(
        "    action: cancel\n", f"    exempt: {{arns: ['{arn}']}}\n    action: cancel\n"
    )
    (problem,) = problems(text)
    assert "field exempt.arns[0]: " in problem
    assert "not a quantum task ARN" in problem or "is not a Braket region" in problem
    assert check_text(text.replace(arn, GOOD_ARN)).ok
