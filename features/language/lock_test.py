"""The definition lock: the checked-in lock matches the definitions, and the check catches an
in-place change (naming the feature, telling to publish a version) and a removed feature that
a workflow still uses."""
import json
import pathlib
import shutil

from roundhouse.features.language import lock

FEATURES = pathlib.Path(__file__).parents[1]
REPO = FEATURES.parent


def test_checked_in_lock_matches_the_definitions():
    locked = json.loads((FEATURES / "defs" / "features.lock").read_text())
    problems = lock.check(locked, lock.compute(FEATURES / "defs"),
                          lock.used_by_workflows(REPO / "workflows"))
    assert not problems, "\n".join(problems)


def _copy_defs(tmp_path) -> pathlib.Path:
    defs = tmp_path / "defs"
    shutil.copytree(FEATURES / "defs", defs)
    return defs


def test_in_place_change_fails_naming_the_feature_and_the_fix(tmp_path):
    defs = _copy_defs(tmp_path)
    locked = lock.compute(defs)
    fraud = defs / "fraud.feat"
    fraud.write_text(fraud.read_text().replace(
        "card_charges_1h v1 = count(charge) by card_id over 1h",
        "card_charges_1h v1 = count(charge) by card_id over 2h"))
    problems = lock.check(locked, lock.compute(defs), {})
    assert len(problems) == 1, problems
    assert "published feature 'card_charges_1h' v1" in problems[0]
    assert "changed in place" in problems[0]
    assert "feature card_charges_1h v2 = ..." in problems[0]


def test_change_of_a_read_feature_changes_its_readers(tmp_path):
    defs = _copy_defs(tmp_path)
    locked = lock.compute(defs)
    fraud = defs / "fraud.feat"
    fraud.write_text(fraud.read_text().replace(
        "card_amount_avg_30d v1 = avg(charge.amount) by card_id over 30d",
        "card_amount_avg_30d v1 = avg(charge.amount where amount > 0) by card_id over 30d"))
    changed = {p.split("'")[1] for p in lock.check(locked, lock.compute(defs), {})}
    assert changed == {"card_amount_avg_30d", "amount_to_card_avg_30d"}


def test_formatting_comments_and_new_versions_do_not_trip_the_lock(tmp_path):
    defs = _copy_defs(tmp_path)
    locked = lock.compute(defs)
    fraud = defs / "fraud.feat"
    fraud.write_text("# a new comment\n" + fraud.read_text().replace(
        "card_charges_1h v1 = count(charge) by card_id over 1h",
        "card_charges_1h v1 =\n    count(charge)   by card_id over 1h\n"
        "feature card_charges_1h v2 = count(charge where amount > 0) by card_id over 1h"))
    problems = lock.check(locked, lock.compute(defs), {})
    assert problems == ["fraud.feat: feature 'card_charges_1h_v2' is not in the lock; "
                        f"publish it with `{lock.UPDATE}`"]


def test_removing_a_feature_a_workflow_uses_fails(tmp_path):
    defs = _copy_defs(tmp_path)
    locked = lock.compute(defs)
    fraud = defs / "fraud.feat"
    fraud.write_text(fraud.read_text().replace(
        "feature merchant_charges_1h v1 = count(charge) by merchant_id over 1h\n", ""))
    workflows = tmp_path / "workflows" / "fraud"
    workflows.mkdir(parents=True)
    (workflows / "features.py").write_text('FEATURES = ["amount", "merchant_charges_1h"]\n')
    used = lock.used_by_workflows(tmp_path / "workflows")
    problems = lock.check(locked, lock.compute(defs), used)
    assert len(problems) == 1 and "'merchant_charges_1h' was removed but is still used by" \
        in problems[0] and "workflows/fraud/features.py" in problems[0]
    # Without a user, removal is allowed (the lock keeps the entry as history).
    assert lock.check(locked, lock.compute(defs), {}) == []
