"""The README matches what happens: its least-privilege SQL uses the role docker/initdb/
creates and docker/driftwatch.toml connects as; it describes every sampling path a user can
see in output; the demo numbers it quotes are written as the demo prints them, and marked
as approximate (they come from one run; HNSW builds and samples vary a little)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import driftwatch.pg.sampler as sampler

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _sql_block_after(text: str, marker: str) -> str:
    start = text.index(marker)
    block = re.search(r"```sql\n(.*?)```", text[start:], re.DOTALL)
    assert block, f"no SQL block after {marker!r}"
    return block.group(1)


def test_least_privilege_sql_names_the_role_docker_uses() -> None:
    readme_sql = _sql_block_after(README, "needs nothing but `SELECT`")
    (readme_role,) = set(re.findall(r"GRANT SELECT ON .* TO (\w+);", readme_sql))
    assert re.search(rf"CREATE ROLE {readme_role} LOGIN", readme_sql)
    assert re.search(rf"ALTER ROLE {readme_role} SET default_transaction_read_only = on", readme_sql)
    initdb = (ROOT / "docker" / "initdb" / "01-driftwatch.sh").read_text()
    (docker_role,) = set(re.findall(r"GRANT SELECT ON .* TO (\w+);", initdb))
    assert readme_role == docker_role
    config = tomllib.loads((ROOT / "docker" / "driftwatch.toml").read_text())
    assert all(c["dsn"].startswith(f"postgresql://{readme_role}@") for c in config["collections"])
    assert f"postgresql://{readme_role}@" in README  # the README's collection example too


def _sampling_methods() -> set[str]:
    """Every value the sampler can put in a sample's `method` (what capture prints)."""
    tree = ast.parse(Path(sampler.__file__).read_text())
    methods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_Drawn" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant):
                methods.add(first.value)
        if isinstance(node, ast.keyword) and node.arg == "method" and isinstance(node.value, ast.Constant):
            methods.add(node.value.value)
    return methods


def test_every_sampling_path_is_described() -> None:
    methods = _sampling_methods()
    assert {"tid", "bernoulli", "full", "arrivals"} <= methods
    section = README[README.index("### How the sample is drawn") : README.index("## Running the daemon")]
    for method in methods:
        assert f"**`{method}`**" in section, f"README does not describe the {method!r} sampling path"


def test_demo_recall_numbers_are_quoted_as_the_demo_prints_them() -> None:
    """The demo prints one recall line; the README quotes it verbatim, and its table says
    "about" those numbers."""
    printed = (ROOT / "driftwatch" / "cli" / "main.py").read_text()
    assert 'f"recall@10 of the suite through the index: {before} before the push, "' in printed
    quoted = re.search(
        r"^recall@10 of the suite through the index: (\d\.\d\d) before the push, (\d\.\d\d) after it, "
        r"(\d\.\d\d) with the adapter \(a full v2 re-embed, exact search: (\d\.\d\d)\)",
        README,
        re.MULTILINE,
    )
    assert quoted, "the README must quote the demo's recall line as the demo prints it"
    before, after, mapped, _ = quoted.groups()
    assert float(after) < float(mapped) <= float(before)  # the story: collapse, then mostly back
    row = next(line for line in README.splitlines() if line.startswith("| Drift-Adapter |"))
    assert f"{after} → about {mapped} through the index, against about {before} before the push" in row
