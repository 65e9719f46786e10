"""The README states what the code does: its results table is the diff of the committed records,
and its commands are the ones CI runs."""
import re

from results.compare import diff, render
from results.records import default_paths
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_results_table_is_the_diff_of_the_committed_records():
    block = re.search(r"<!-- diff:begin[^>]*-->\n(.*?)\n<!-- diff:end -->", README, re.S)
    assert block, "README.md lost its diff:begin / diff:end markers"
    expected = render(diff(default_paths(ROOT)), markdown=True).strip()
    assert block.group(1).strip() == expected, (
        "README's results table is stale: replace it with `python -m reproduction diff --markdown`")


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^(pip install -e \S+)", README, re.M).group(1)
    assert install in ci
    assert "```bash\npython -m pytest\n```" in README and "\npython -m pytest\n" in ci
