"""The README opens with the two commands a new user runs, and CI runs the second one."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _first_code_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash)?\n(.*?)```", text, re.S)
    assert block, "README.md must open with a code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_readme_opens_with_setup_and_test_commands():
    commands = _first_code_block()
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "setup"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks the '{target}' target"
    # demo and test both depend on the full set-up, so either works on a fresh clone
    assert re.search(r"^demo: setup", makefile, re.M) and re.search(r"^test: setup", makefile, re.M)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci.split("\n", 2)[-1]
    assert "set -euo pipefail" in ci


def test_console_scripts_named_in_readme_exist():
    setup = (ROOT / "setup.py").read_text()
    text = (ROOT / "README.md").read_text()
    code = " ".join(re.findall(r"```.*?```", text, re.S) + re.findall(r"`[^`\n]+`", text))
    for script in set(re.findall(r"(?<![\w.-])(fusion[-_][a-z-]+)\b", code)):  # not config keys (data.fusion_x) or flags (--fusion-mode)
        if script in ("fusion_ros", "fusion_node") or script.endswith("-"):
            continue
        assert f'"{script} = ' in setup, f"README mentions {script}, setup.py does not install it"
