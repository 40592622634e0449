"""The dependency rule: hsg_core never imports faiss or gradio; index never imports torch, gradio or hsg_core."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_hsg_core_never_imports_faiss_or_gradio():
    modules = [p.stem for p in (REPO / "hsg_core").glob("*.py") if p.stem != "__init__"]
    loaded = imported_after(
        "; ".join(f"import hsg_core.{m}" for m in modules)
        + "; import hsg_core.backbones, hsg_core.overseg"
    )
    assert "torch" in loaded and not loaded & {"faiss", "gradio"}


def test_index_never_imports_torch_gradio_or_core():
    modules = [p.stem for p in (REPO / "index").glob("*.py") if p.stem != "__init__"]
    loaded = imported_after("import index; " + "; ".join(f"import index.{m}" for m in modules))
    assert "faiss" in loaded and not loaded & {"torch", "gradio", "hsg_core"}


def test_no_hard_coded_cuda_in_library_code():
    pattern = re.compile(r"\.cuda\(|[\"']cuda:0[\"']")
    offenders = [
        str(p)
        for folder in ("hsg_core", "index")
        for p in (REPO / folder).rglob("*.py")
        if pattern.search(p.read_text())
    ]
    assert not offenders


def test_hsg_files_shared_by_both_packages_imports_only_the_standard_library():
    loaded = imported_after("import hsg_files")
    assert not loaded & {"numpy", "PIL", "torch", "faiss", "gradio", "hsg_core", "index"}
