"""hsg_core.evaluation keeps the core's dependency rule: never faiss or gradio."""

from tests.test_layering import imported_after

MODULES = ("metrics", "datasets", "baselines", "transfer", "protocols", "report", "runner")


def test_evaluation_never_imports_faiss_or_gradio():
    loaded = imported_after("; ".join(f"import hsg_core.evaluation.{m}" for m in MODULES))
    assert not loaded & {"faiss", "gradio", "index", "app"}
