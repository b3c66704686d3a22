"""detcore's pytest plugin: a plugin's test suite gets the shared fixtures through the ``pytest11`` entry
point, without a conftest; each case runs pytest in a subprocess, as a plugin author would."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

SUITE = textwrap.dedent(
    """
    import os

    import torch

    torch.set_num_threads(3)  # what the module asks for; the ini option overrides it per test


    def test_threads_of_a_plain_test():
        assert torch.get_num_threads() == int(os.environ["EXPECT_THREADS"])


    def test_one_thread_fixture(one_thread):
        assert torch.get_num_threads() == 1


    def test_plugin_env_fixture(plugin_env):
        manager, registry = plugin_env(
            [("mine", "det-plugin-mine", "0.2", {"detcore_register_losses": {"MyLoss": dict}})]
        )
        entry = registry.get("loss", "MyLoss")
        assert (entry.plugin, entry.distribution) == ("mine", "det-plugin-mine")
        assert manager.infos["mine"].status == "loaded"
    """
)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_fixtures_and_thread_option_come_from_the_entry_point(suite, monkeypatch):
    suite.makeini("[pytest]\ndetcore_num_threads = 2\n")
    monkeypatch.setenv("EXPECT_THREADS", "2")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_the_option_the_thread_count_is_left_alone(suite, monkeypatch):
    monkeypatch.setenv("EXPECT_THREADS", "3")
    suite.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_bad_thread_option_is_a_usage_error(suite):
    suite.makeini("[pytest]\ndetcore_num_threads = two\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option detcore_num_threads = 'two': expected an int >= 1*"])


def test_blocking_the_plugin_removes_its_fixtures(suite, monkeypatch):
    monkeypatch.setenv("EXPECT_THREADS", "3")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:detcore")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*fixture 'one_thread' not found*"])
