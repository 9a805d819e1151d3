"""Fetching packages from a local HTTP server that serves the real packages, with a missing file, a
response cut short and one that stalls."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_prep.pmc_oa.article import DownloadOptions
from data_prep.pmc_oa.download import download
from data_prep.pmc_oa.pipeline import RunSettings, extract
from data_prep.pmc_oa.sources import find_sources, plan_sources
from infra.errors import UserError
from pubmedclip.cli import main

LICENCES = {"PMC11518443": "CC BY-NC", "PMC12419688": "CC BY", "pmc2924383": "CC BY", "pmc2958805": "CC BY",
            "pmc3532326": "CC BY"}


class Server:
    """Serves ``root/<name>`` at ``/oa_package/xx/<name>``, with range requests. ``cut[name] = n``: the next
    response stops after n bytes; ``stall`` names sleep before answering; ``requests`` logs (path, range)."""

    def __init__(self, root: Path):
        self.root, self.cut, self.stall, self.requests = root, {}, set(), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name in server.stall:
                    time.sleep(1.0)
                path = server.root / name
                if not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                data = path.read_bytes()
                start = int(self.headers["Range"][6:].split("-")[0]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if name in server.cut:
                    body = body[: server.cut.pop(name)]
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(pmc_oa: Path) -> Iterator[Server]:
    served = Server(pmc_oa / "packages")
    thread = threading.Thread(target=served.httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def _file_list(path: Path, names: list[str]) -> Path:
    rows = [f"oa_package/xx/{n}.tar.gz\tCitation of {n}\t{n.upper()}\t\t{LICENCES.get(n, 'CC BY')}" for n in names]
    path.write_text("2025-09-10 12:00:00\n" + "\n".join(rows) + "\n")
    return path


def test_truncated_response_resumes_with_a_range_request(server: Server, pmc_oa: Path, tmp_path: Path) -> None:
    original = (pmc_oa / "packages" / "pmc3532326.tar.gz").read_bytes()
    server.cut["pmc3532326.tar.gz"] = 100_000
    path = download(f"{server.url}/oa_package/xx/pmc3532326.tar.gz", tmp_path / "p.tar.gz", retries=2, wait=0.01)
    assert path.read_bytes() == original
    assert server.requests == [("pmc3532326.tar.gz", None), ("pmc3532326.tar.gz", "bytes=100000-")]
    assert not (tmp_path / "p.tar.gz.part").exists()


def test_missing_file_is_not_retried_and_a_stall_times_out(server: Server, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"download failed: .*/PMC1\.tar\.gz: HTTP 404"):
        download(f"{server.url}/oa_package/xx/PMC1.tar.gz", tmp_path / "a.tar.gz", retries=3, wait=0.01)
    assert len(server.requests) == 1
    server.stall.add("PMC12419688.tar.gz")
    with pytest.raises(Exception, match=r"PMC12419688\.tar\.gz: .*timed out"):
        download(f"{server.url}/oa_package/xx/PMC12419688.tar.gz", tmp_path / "b.tar.gz", retries=1, timeout=0.2,
                 wait=0.01)
    assert not (tmp_path / "b.tar.gz").exists()


def test_download_run_equals_local_run_and_failures_are_retried_next_time(server: Server, pmc_oa: Path,
                                                                           tmp_path: Path) -> None:
    names = sorted(LICENCES) + ["PMC404"]
    listed = _file_list(tmp_path / "oa_file_list.txt", names)
    fetched = tmp_path / "packages"
    sources = plan_sources(fetched, listed, server.url)
    server.cut["pmc2958805.tar.gz"] = 50_000  # cut short, and no retries left in this run
    once = DownloadOptions(retries=0, timeout=5, wait=0.01)
    with pytest.raises(UserError, match=r"1 package downloads failed .*pmc2958805.*run the same command again"):
        extract(sources, tmp_path / "out", download_options=once, settings=RunSettings(workers=2, show_progress=False),
                shard_size=4)
    assert (tmp_path / "out" / "000000.tar").is_file() and not (tmp_path / "out" / "summary.json").exists()
    summary = extract(sources, tmp_path / "out", download_options=once, settings=RunSettings(workers=2, show_progress=False),
                      shard_size=4)
    assert [r for r in server.requests if r[0] == "pmc2958805.tar.gz"][-1] == ("pmc2958805.tar.gz", "bytes=50000-")
    local = extract(find_sources(pmc_oa / "packages"), tmp_path / "local", settings=RunSettings(workers=1, show_progress=False),
                    shard_size=4)
    assert summary["pairs"] == local["pairs"] == 11 and summary["articles_failed"] == 1  # the 404
    for shard in local["shards"]:
        assert (tmp_path / "out" / shard).read_bytes() == (tmp_path / "local" / shard).read_bytes()
    assert "PMC404.tar.gz: HTTP 404" in (tmp_path / "out" / "errors.jsonl").read_text()
    assert sorted(p.name for p in fetched.iterdir()) == sorted(f"{n}.tar.gz" for n in LICENCES)
    requests = len(server.requests)
    commercial = main(["pmc-oa", "extract", "--source", str(fetched), "--out", str(tmp_path / "cc"), "--download",
                       "--file-list", str(listed), "--base-url", server.url, "--commercial", "--workers", "1"])
    assert commercial == 0
    assert json.loads((tmp_path / "cc" / "summary.json").read_text())["articles_excluded"] == {"licence": 1}
    assert [r[0] for r in server.requests[requests:]] == ["PMC404.tar.gz"]  # the rest are on disk; CC BY-NC not asked
