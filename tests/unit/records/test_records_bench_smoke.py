"""`rilke bench codec` runs end to end on a tiny load (figures are not checked)."""

import pytest

from rilke.cli.main import main


def test_bench_codec_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["bench", "codec", "--records", "3000", "--repeat", "1", "--codecs", "none,lz4"]) == 0
    )
    out = capsys.readouterr().out
    assert "build rec/s" in out
    assert "check_batch" in out
