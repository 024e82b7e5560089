"""A local stand-in for the Hugging Face hub's file endpoints, for the downloader tests.

``huggingface_hub.hf_hub_download`` (and ``get_hf_file_metadata``) call
``HEAD/GET {endpoint}/datasets/{repo_id}/resolve/{revision}/{path}`` and read ``X-Repo-Commit``,
``ETag`` (an LFS file's ETag is its sha256) and ``Content-Length``; a missing file is a 404 with
``X-Error-Code: EntryNotFound``. The server below answers exactly those, from an in-memory dict that a
test may change between calls, and counts the requests per path.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

REPO_ID = "golf-tests/fake-parameter-golf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    repo_id = REPO_ID

    def __init__(self):
        self.files: dict[str, bytes] = {}  # repo path -> content
        self.etags: dict[str, str] = {}  # repo path -> ETag to announce instead of the real one
        self.requests: Counter = Counter()  # (method, repo path) -> count
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def etag(self, path: str) -> str:
        if path in self.etags:
            return self.etags[path]
        data = self.files[path]
        lfs = path.endswith((".bin", ".model"))  # LFS files: sha256; regular files: a git-style sha1
        return hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(data).hexdigest()

    def gets(self, path: str) -> int:
        return self.requests[("GET", path)]

    def _handler(self):
        hub = self
        prefix = f"/datasets/{REPO_ID}/resolve/"

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                url = unquote(self.path.split("?")[0])
                path = url[len(prefix):].split("/", 1)[1] if url.startswith(prefix) else None
                hub.requests[(self.command, path)] += 1
                if path not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[path]
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hub.etag(path)}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if with_body:
                    self.wfile.write(data)

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._answer(with_body=False)

            def do_GET(self):  # noqa: N802
                self._answer(with_body=True)

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def small_caseops_model(tmp_path_factory):
    """A 400-piece CaseOps tokenizer trained on the language reference that ships with Python."""
    from pydoc_data.topics import topics

    from golf.data.caseops_tokenizer import train_caseops_tokenizer

    return train_caseops_tokenizer([topics[k] for k in sorted(topics)[:40]], tmp_path_factory.mktemp("co") / "co", 400)


@pytest.fixture(scope="session")
def python_docs_jsonl(tmp_path_factory):
    """The language reference topics (79 documents, 0.5 MB) in the docs_selected.jsonl layout."""
    import json
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("docs") / "docs_selected.jsonl"
    path.write_text("".join(json.dumps({"text": topics[k]}) + "\n" for k in sorted(topics)))
    return path
