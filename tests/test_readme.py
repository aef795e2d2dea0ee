from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return [b.strip() for b in blocks if b.strip().startswith("python3 -m venv")]


def test_readme_has_the_two_setup_commands_each_one_line():
    main_job, tests = readme_commands()
    assert "\n" not in main_job and "\n" not in tests
    for command in (main_job, tests):
        # torch is pinned and installed before the package that depends on it
        assert re.search(r"pip install (-q )?torch==2\.13\.0 && .*pip install (-q )?-e ", command)
    assert main_job.endswith("rednet demo")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_pyproject_declares_torch_at_least_2_4_and_the_console_script():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.4"' in text
    assert 'rednet = "rednet.cli:main"' in text


def test_the_readme_model_list_is_what_rednet_models_prints(capsys):
    from rednet.cli import main

    block = re.search(
        r"`rednet models` lists them:\n\n```text\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "README: the `rednet models` block is missing"
    assert main(["models"]) == 0
    assert block.group(1) == capsys.readouterr().out
