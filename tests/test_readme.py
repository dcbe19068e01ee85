"""The README's Python example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run():
    import explorer as ex

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    before = set(ex.CURVATURES)
    namespace: dict = {}
    try:
        for block in blocks:  # one namespace: later blocks build on earlier ones
            exec(compile(block, "README.md", "exec"), namespace)
    finally:
        for key in set(ex.CURVATURES) - before:  # leave the registry as found
            ex.CURVATURES.unregister(key)


def test_readme_doctests_pass():
    """The ``pycon`` blocks (Bring your own model) run as doctests."""
    import doctest

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```pycon\n(.*?)```", text, flags=re.S)
    assert blocks
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for index, block in enumerate(blocks):
        test = parser.get_doctest(block, {}, f"README.md block {index}", None, 0)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_quickstart_has_exactly_two_commands_and_ci_calls_the_test_one():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = (
        re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)[0].strip().splitlines()
    )
    assert [line.split()[0] for line in commands] == [
        "./scripts/app.sh",
        "./scripts/test.sh",
    ]
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
