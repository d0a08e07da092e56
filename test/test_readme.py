"""The README opens with the two commands a new user runs, CI runs the second one, and the README stays
the front door: short, in the product's voice, linking docs/ where the details and measurements live."""
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


# ---------------------------------------------------------------------------------------- the front door
# The README is what a ROS user reads first: what it is, the two commands, the three uses, parameters and
# the shipped model's numbers. Measurement tables, earlier models and how the project got here live in
# docs/, one file per topic, each linked from the README.
README_MAX_LINES = 250
DOCS = ROOT / "docs"
# top-level folders whose paths the README and docs name; such a path must exist in the checkout
REPO_DIRS = ("benchmarks", "config", "docs", "fusion_ros", "interfaces", "launch", "scripts", "test", "training")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _code(text: str) -> list[str]:
    """The fenced code blocks (without their shell comments) and the inline code spans of a Markdown text."""
    blocks = [re.sub(r"(^|\s)#.*$", "", block, flags=re.M) for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S)]
    prose = re.sub(r"```.*?```", " ", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def test_readme_stays_short_and_speaks_of_the_product():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move tables and details to docs/")
    assert not re.search(r"\bissues? #?\d+", text, re.I), "README refers to issue numbers: say what the product does"
    assert not re.search(r"\bthis session\b", text, re.I), "README speaks of a development session"
    for md in _markdown_files():
        prose = re.sub(r"```.*?```", " ", md.read_text(), flags=re.S)  # shell comments in code are no headings
        headings = [line for line in prose.splitlines() if line.startswith("#")]
        assert len(headings) > 1, f"{md.relative_to(ROOT)} has no sections"
        named_issues = [h for h in headings if re.search(r"#\d+|\bissues?\b", h, re.I)]
        assert not named_issues, f"{md.relative_to(ROOT)}: headings name issues, not topics: {named_issues}"


def test_readme_links_every_docs_file_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    linked = {Path(target) for target in re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", readme)}
    docs = {path.relative_to(ROOT) for path in DOCS.glob("*.md")}
    assert docs, "docs/ holds no Markdown file"
    assert not sorted(docs - linked), f"README.md links no {sorted(map(str, docs - linked))}"
    for md in _markdown_files():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            assert (md.parent / target).exists(), f"{md.relative_to(ROOT)} links {target}, which does not exist"


def test_every_console_script_is_documented_and_every_named_one_exists():
    setup = (ROOT / "setup.py").read_text()
    installed = set(re.findall(r'"([\w-]+) = [\w.]+:main"', setup))
    assert "fusion_node" in installed and "fusion-demo" in installed, installed
    named = set()
    for md in _markdown_files():
        code = " ".join(_code(md.read_text()))
        # commands are fusion-<name> and fusion_node; not flags (--fusion-mode), file names or prefixes (fusion-)
        for script in set(re.findall(r"(?<![\w./-])(fusion-[a-z-]*[a-z]|fusion_node)\b(?![/.])", code)):
            assert script in installed, f"{md.relative_to(ROOT)} names {script}, setup.py does not install it"
            named.add(script)
    assert not sorted(installed - named), f"no README or docs command names {sorted(installed - named)}"


def test_commands_and_paths_in_readme_and_docs_name_real_files():
    makefile = (ROOT / "Makefile").read_text()
    checked = {"module": 0, "launch file": 0, "make target": 0, "path": 0}
    for md in _markdown_files():
        where = md.relative_to(ROOT)
        code = " ".join(_code(md.read_text()))
        for module in re.findall(r"python\S* -m ((?:training|fusion_ros|benchmarks)(?:\.\w+)+)", code):
            path = ROOT / module.replace(".", "/")
            assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), \
                f"{where}: `python -m {module}`: no such module"
            checked["module"] += 1
        for launch in re.findall(r"ros2 launch fusion_ros (\S+)", code):
            assert (ROOT / "launch" / launch).is_file(), f"{where}: `ros2 launch fusion_ros {launch}`: no such file"
            checked["launch file"] += 1
        for target in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code):
            assert re.search(rf"^{target}:", makefile, re.M), f"{where}: `make {target}`: no such Makefile target"
            checked["make target"] += 1
        for path in re.findall(rf"(?<![\w./~$-])((?:{'|'.join(REPO_DIRS)})/[\w./-]*[\w/])", code):
            assert (ROOT / path).exists(), f"{where} names {path}, which does not exist"
            checked["path"] += 1
    assert all(checked.values()), f"the commands were not found in the Markdown files: {checked}"
