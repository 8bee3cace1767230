"""What every ``hsets`` command shares: settings refused in one line before the model loads or a
server starts, ``--debug`` showing the traceback, and a file named like an option."""
import pytest
from conftest import one_line_error, run_cli, save_photos

from hsets_widgets.cli.main import main as hsets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- settings every command checks before the model loads or a server starts --------------------
@pytest.mark.parametrize("command", ["explain", "evaluate", "sweep"])
def test_missing_checkpoint_with_the_default_model_is_refused(capsys, tmp_path, command):
    extra = ["--mu", "8"] if command == "sweep" else []
    code, _, err = run_cli(capsys, command, "coffee" if command != "evaluate" else tmp_path,
                           "--checkpoint", tmp_path / "nope.pth", "--out", tmp_path / "o", *extra)
    assert code == 1 and "checkpoint not found" in one_line_error(err, command)


@pytest.mark.parametrize("spec", ["ig:bogus=1", "caso:n_iter=-1", "moxi:grid=0", "archipelago:paint=bogus"])
def test_bad_method_options_fail_before_the_model_loads(capsys, tmp_path, photo48, no_model_load, spec):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    code, _, err = run_cli(capsys, "evaluate", folder, "--methods", f"random,{spec}", "--out", tmp_path / "o")
    assert code == 1 and spec.split(":")[1].split("=")[0] in one_line_error(err, "evaluate")
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "explain", "coffee", "--compare", spec, "--out", tmp_path / "e")
    assert code == 1 and spec.split(":")[1].split("=")[0] in one_line_error(err, "explain")


@pytest.mark.parametrize("command", ["explain", "evaluate", "explore"])
def test_a_bad_memory_budget_is_refused_first(capsys, tmp_path, photo48, monkeypatch, no_model_load, no_server,
                                              command):
    target = [save_photos(tmp_path / "imgs", photo48, 1)] if command == "evaluate" else ["coffee"]
    extra = ["--no-browser"] if command == "explore" else ["--out", tmp_path / "o"]
    if command != "evaluate":             # (evaluate has no --set: its methods take H-Sets settings)
        code, _, err = run_cli(capsys, command, *target, *extra, "--set", "memory_budget=inf")
        assert code == 1 and "memory_budget" in one_line_error(err, command)
    else:
        code, _, err = run_cli(capsys, command, *target, *extra, "--methods", "hsets:memory_budget=inf")
        assert code == 1 and "memory_budget" in one_line_error(err, command)
    monkeypatch.setenv("HSETS_MEMORY_BUDGET", "abc")
    code, _, err = run_cli(capsys, command, *target, *extra)
    line = one_line_error(err, command)
    assert code == 1 and "HSETS_MEMORY_BUDGET='abc'" in line and "1.5G" in line


@pytest.mark.parametrize("command", ["explain", "sweep", "explore"])
def test_an_unknown_segmenter_is_refused_when_the_command_line_is_read(capsys, no_model_load, no_server, command):
    extra = ["--mu", "8"] if command == "sweep" else []
    code, _, err = run_cli(capsys, command, "coffee", "--segmenter", "bogus", *extra)
    assert code == 1 and "unknown segmenter 'bogus'" in one_line_error(err, command)


# ---- errors -------------------------------------------------------------------------------------
def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        hsets(["explain", "coffee", "--n-sets", "0", "--out", str(tmp_path / "o"), "--debug"])


def test_a_file_named_like_an_option_gets_a_hint(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-dash.jpg").write_bytes(b"x")
    code, _, err = run_cli(capsys, "explain", "-dash.jpg")
    assert code == 1 and "write ./-dash.jpg (or put -- before it)" in err
