"""`rilke bench` without tqdm (the `bench` extra): the progress bars become silent stand-ins."""

import sys

import pytest

from rilke.bench import common, storage


def test_progress_without_tqdm_is_a_silent_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    with common.progress(10, disable=False) as bar:
        assert isinstance(bar, common.NoProgress)
        bar.update(5)
        bar.set_description("x")
    with storage._progress(10, "write", True) as bar:
        assert isinstance(bar, common.NoProgress)
        bar.update(1)
    assert capsys.readouterr() == ("", "")


def test_progress_with_tqdm_is_tqdm() -> None:
    tqdm = pytest.importorskip("tqdm")
    with common.progress(3, disable=True) as bar:
        assert isinstance(bar, tqdm.tqdm)
