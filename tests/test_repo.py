"""The README's two commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .venv && .*?)\n```", readme)
    assert len(commands) == 2, "README must give exactly two set-up-and-go commands"
    main_job, tests = commands
    assert "tunekit run experiments/digits.yaml" in main_job and "pytest" in tests
    assert tests in (ROOT / ".ci/run").read_text()
