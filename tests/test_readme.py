"""The README's Pythae snippet runs as written, and its quick start is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_snippet_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "README has no python snippet"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:  # the snippets build on each other, as a reader runs them
        exec(compile(block, "README.md", "exec"), namespace)
    assert type(namespace["reloaded"]).__name__ == "AVAE"
    assert (tmp_path / "runs" / "my_avae" / "model_config.json").exists()
    assert len(namespace["table"]) == 4 and (tmp_path / "runs" / "eval" / "robustness.json").exists()
    assert type(namespace["ss"]).__name__ == "AVAE_SS"


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1]
    commands = re.search(r"```bash\n(.*?)```", quick, flags=re.S).group(1).strip().splitlines()
    assert len(commands) == 2
    test_command = commands[1].split("#")[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for command in commands:
        target = command.split("#")[0].split()[1]
        assert re.search(rf"^{target}:", makefile, flags=re.M)
