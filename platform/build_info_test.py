import re

from roundhouse.platform import build_info


def test_parse_stamped():
    info = build_info.parse("STAMPED true\nSTABLE_GIT_COMMIT abc123\nSTABLE_GIT_DIRTY false\n")
    assert info == build_info.BuildInfo(stamped=True, git_sha="abc123", git_dirty=False)


def test_parse_unstamped_never_reports_a_sha():
    info = build_info.parse("STAMPED false\nSTABLE_GIT_COMMIT abc123\n")
    assert info.git_sha is None and info.git_dirty is None and not info.stamped


def test_parse_stamped_outside_git_has_no_sha():
    info = build_info.parse("STAMPED true\n")
    assert info.stamped and info.git_sha is None and info.git_dirty is None


def test_this_build_is_stamped_with_a_real_sha():
    # .bazelrc stamps by default, and the tests run from a git checkout.
    info = build_info.current()
    assert info.stamped
    assert re.fullmatch(r"[0-9a-f]{40}", info.git_sha or "")
    assert info.git_dirty in (True, False)


def test_nostamp_rule_output_says_unstamped():
    import pathlib
    text = pathlib.Path(build_info.__file__).with_name("unstamped_build_info_data.txt").read_text()
    assert text == "STAMPED false\n"
    assert build_info.parse(text).git_sha is None
