"""environment.yml cannot be solved here (no conda channel): check it parses and covers pyproject."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "faiss-gpu": "faiss-gpu"}


def names(requirements):
    return {re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_lists_every_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = (
        names(project["dependencies"])
        | names(project["optional-dependencies"]["test"])
        | {"faiss-gpu"}
    )
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = names(d for d in env["dependencies"] if isinstance(d, str))
    pip = names(next(d["pip"] for d in env["dependencies"] if isinstance(d, dict)))
    missing = {n for n in wanted if CONDA_NAMES.get(n, n) not in conda | pip}
    assert not missing, missing
    assert "faiss-cpu" not in conda | pip  # faiss-cpu and faiss-gpu overwrite each other


def test_torch_pinned_in_readme_and_ci():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_cmd = next(line for line in readme.splitlines() if "python -m pytest" in line)
    assert "torch==2.13.0" in test_cmd and test_cmd.strip() in ci
    assert "python app.py" in readme and "hsg weights fetch" in readme
