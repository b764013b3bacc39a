"""The training CLI: bad input stops with one clear message (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("csv", "extra", "message"),
    [
        (None, [], "data file not found"),
        ("date,rides\n2020-01-01,1\n2020-01-02,x\n2020-01-03,2\n", [], "'rides' is not numeric"),
        (
            "date,rides\n" + "".join(f"2020-01-{d:02d},{d}\n" for d in range(1, 20)),
            [],
            "too few for a window of 50 inputs",
        ),
        ("date,rides\n2020-01-01,1\n2020-01-02,\n2020-01-03,2\n2020-01-04,2\n", [], "empty values"),
        ("date,rides\n2020-01-01,1\n2020-01-02,2\n", ["--covariates", "bus"], "bus not found"),
    ],
)
def test_bad_data_fails_with_one_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    csv: str | None,
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "data.csv"
    if csv is not None:
        path.write_text(csv)
    code, err = run(
        capsys, "train", "--model", "lstm", "--data", str(path), "--target", "rides", *extra
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_export_needs_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "export", "--run", str(tmp_path), "--out", str(tmp_path / "m"))
    assert code == 2
    assert "run.json not found" in err


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "lstm", "--horizon", "0"])
    assert exc.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err
