"""Safe defaults (issue 6, SECURITY.md): loopback only, no share link, files served only from the
data roots, bounded uploads, nothing from a user's files executed."""

import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import app
import cli
import serve_options
from tests.conftest import free_port, png_header_only

REPO = Path(__file__).resolve().parents[1]


def test_defaults_bind_loopback_with_no_share_link_and_bounded_uploads(explorer, monkeypatch):
    args = app.parse_args([])
    options = app.launch_options(args, explorer)
    assert options["server_name"] == "127.0.0.1" and options["share"] is False
    assert options["max_file_size"] == app.MAX_UPLOAD == "25mb"
    assert options["allowed_paths"] == [str(p) for p in explorer.data_roots]
    assert (
        options["state_session_capacity"] == serve_options.MAX_SESSIONS
        and options["show_error"] is False
    )
    assert (
        app.launch_options(app.parse_args(["--host", "0.0.0.0"]), explorer)["server_name"]
        == "0.0.0.0"
    )
    seen = {}
    monkeypatch.setattr(app, "load_app", lambda args: explorer)
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    app.main([])  # what `python app.py` does
    assert (
        seen["server_name"] == "127.0.0.1"
        and seen["share"] is False
        and seen["max_file_size"] == "25mb"
    )


def test_hsg_serve_passes_loopback_and_no_share_by_default(monkeypatch):
    seen = []
    monkeypatch.setattr(app, "serve", lambda args: seen.append(args) or 0)
    assert cli.main(["serve"]) == 0
    assert seen[0].host == "127.0.0.1" and seen[0].share is False
    assert cli.main(["serve", "--host", "0.0.0.0", "--share"]) == 0
    assert seen[1].host == "0.0.0.0" and seen[1].share is True


@pytest.fixture(scope="module")
def served(tmp_path_factory, explorer):
    """The app served with its real launch options, a secret beside its data root, links out of it."""
    root = explorer.data_roots[0]
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("top secret")
    os.symlink(outside / "secret.txt", root / "link-to-secret.txt")
    os.symlink(outside, root / "link-to-outside")
    port = free_port()
    demo = app.launch(
        explorer, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True
    )
    yield f"http://127.0.0.1:{port}", root, outside
    demo.close()
    (root / "link-to-secret.txt").unlink()
    (root / "link-to-outside").unlink()


def test_files_are_served_from_the_data_roots_only(served):
    url, root, outside = served
    image = sorted(root.glob("*.png"))[0]
    assert httpx.get(f"{url}/gradio_api/file={image}").content == image.read_bytes()
    crafted = [
        "/etc/passwd",
        f"{root}/../{outside.name}/secret.txt",
        f"{outside}/secret.txt",
        f"{root}/link-to-secret.txt",
        f"{root}/link-to-outside/secret.txt",
        f"{root}/%2e%2e/secret.txt",
        str(REPO / "pyproject.toml"),
        str(Path.cwd() / "pyproject.toml"),
    ]
    for path in crafted:
        response = httpx.get(f"{url}/gradio_api/file={path}")
        assert response.status_code in (403, 404), path
        assert b"top secret" not in response.content


def call(url: str, api: str, data: list) -> str:
    """POST a raw API call (no gradio_client: it would upload the file itself) and read its result."""
    event = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}).json()["event_id"]
    return httpx.get(f"{url}/gradio_api/call/{api}/{event}", timeout=60).text


def test_an_api_call_cannot_name_a_server_file_as_its_upload(served):
    url, root, outside = served
    for path in ("/etc/passwd", f"{outside}/secret.txt", str(sorted(root.glob("*.png"))[0])):
        result = call(
            url,
            "load_image",
            [{"path": path, "meta": {"_type": "gradio.FileData"}}, 0, 0.45, False],
        )
        assert result.startswith("event: error"), (path, result)


def test_uploads_above_the_limit_are_refused(served):
    url, _, _ = served
    limit = 25 * 2**20
    response = httpx.post(
        f"{url}/gradio_api/upload", files={"files": ("big.png", b"\0" * (limit + 1))}
    )
    assert response.status_code == 413
    assert (
        httpx.post(
            f"{url}/gradio_api/upload", files={"files": ("ok.png", b"\0" * 1000)}
        ).status_code
        == 200
    )


def test_a_decompression_bomb_upload_is_refused_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, root, _ = served
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    client = Client(f"{url}/", verbose=False)
    with pytest.raises(AppError):
        client.predict(handle_file(str(bomb)), 0, 0.45, False, api_name="/load_image")
    image = tmp_path / "fine.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(image)
    client.predict(handle_file(str(image)), 0, 0.45, False, api_name="/load_image")
    strip = client.predict(3, 3, 0, 0.45, False, 3, "same level", True, api_name="/click_xy")[1]
    assert len(strip) == 4  # the selection at every level


UNSAFE = {
    r"(?<![.\w])eval\(": "eval",  # the builtin, not nn.Module.eval()
    r"(?<![.\w])exec\(": "exec",
    r"\bpickle\.loads?\(": "pickle.load",
    r"\bmarshal\.loads?\(": "marshal.load",
    r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True)",
    r"weights_only\s*=\s*False": "torch.load(weights_only=False)",
    r"\byaml\.(unsafe_)?load\(": "yaml.load (use safe_load)",
    r"shell\s*=\s*True": "subprocess(shell=True)",
    r"\bos\.system\(": "os.system",
}


def test_no_code_path_evaluates_or_unpickles_user_data():
    sources = [
        p
        for p in REPO.rglob("*.py")
        if not {".venv", "tests", "build"} & set(p.relative_to(REPO).parts)
    ]
    assert len(sources) > 20
    found = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            found += [
                f"{path.relative_to(REPO)}:{number}: {name}"
                for pattern, name in UNSAFE.items()
                if re.search(pattern, code)
            ]
            if "torch.load(" in code and "weights_only=True" not in code:
                found.append(
                    f"{path.relative_to(REPO)}:{number}: torch.load without weights_only=True"
                )
    assert found == []


def test_an_upload_declaring_14000x14000_is_refused_from_its_header_with_its_name(
    served, tmp_path, monkeypatch
):
    """Issue 13 item 3: gradio decoded uploads before the app saw them; PIL only warns below twice its
    limit, so a 600 KB PNG of 14000x14000 took 2.6 GB. Now the upload reaches `load_image` as a file."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import ImageFile

    url, _, _ = served
    decoded = []
    load = ImageFile.ImageFile.load

    def record_large(self):
        if self.size[0] * self.size[1] > 10**8:
            decoded.append(self.size)
            raise MemoryError("decoding a bomb")
        return load(self)

    monkeypatch.setattr(
        ImageFile.ImageFile, "load", record_large
    )  # the server runs in this process
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(14000, 14000))
    with pytest.raises(AppError) as info:
        Client(f"{url}/", verbose=False).predict(
            handle_file(str(bomb)), 0, 0.45, False, api_name="/load_image"
        )
    assert (
        str(info.value) == "bomb.png: too large (more than 100,000,000 pixels); downscale it first"
    )
    assert decoded == []


def test_the_request_queue_is_bounded(explorer, monkeypatch):
    seen = {}
    monkeypatch.setattr(app, "load_app", lambda args: explorer)
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kw: seen.update(kw, blocks=self))
    assert app.main([]) == 0
    assert seen["blocks"]._queue.max_size == app.MAX_QUEUE == 32


def test_serving_beyond_loopback_warns_and_a_login_can_be_required(
    explorer, monkeypatch, tmp_path, capsys
):
    """Issue 13 item 9: --host 0.0.0.0 printed nothing and no login could be asked for."""
    seen = {}
    monkeypatch.setattr(app, "load_app", lambda args: explorer)
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    monkeypatch.delenv("HSG_AUTH", raising=False)
    logins = tmp_path / "logins"
    logins.write_text("# who may log in\nann:s3cret:with-colon\n\n")
    runs = {
        "loopback": ["--host", "127.0.0.1"],
        "open": ["--host", "0.0.0.0"],
        "login": ["--host", "0.0.0.0", "--auth-file", str(logins)],
    }
    err = {}
    for name, argv in runs.items():
        assert cli.main(["serve", *argv]) == 0
        err[name], auth = capsys.readouterr().err, seen["auth"]
        assert auth == ([("ann", "s3cret:with-colon")] if name == "login" else None)
    assert "warning" not in err["loopback"]
    assert (
        "hsg: warning: serving on 0.0.0.0" in err["open"] and "no login is required" in err["open"]
    )
    assert "hsg: warning: serving on 0.0.0.0" in err["login"] and "no login" not in err["login"]
    monkeypatch.setenv("HSG_AUTH", "bob:pw")
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0 and seen["auth"] == [("bob", "pw")]
    assert "no login" not in capsys.readouterr().err
    logins.write_text("ann\n")  # no password: refused, the line not echoed
    assert cli.main(["serve", "--auth-file", str(logins)]) == 2
    assert capsys.readouterr().err == f"hsg: error: {logins} line 1: expected user:password\n"
