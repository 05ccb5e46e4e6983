"""Progress bars: one call whether shown or not; notes above a shown bar only; status
lines on stderr."""

from rgflow_jax.io import progress


def test_a_bar_passes_its_items_through_shown_or_not(capsys):
  assert list(progress.bar(range(5), False, desc="steps")) == [0, 1, 2, 3, 4]
  assert capsys.readouterr().err == ""  # switched off: nothing drawn
  assert list(progress.bar(range(5), True, desc="steps")) == [0, 1, 2, 3, 4]
  assert "steps" in (err := capsys.readouterr().err) and "5/5" in err


def test_notes_go_above_a_shown_bar_and_nowhere_when_it_is_off(capsys):
  shown, off = progress.bar(total=3, enabled=True), progress.bar(total=3, enabled=False)
  progress.note(off, "hidden line")
  progress.note(shown, "shown line")
  shown.close()
  off.close()
  out = capsys.readouterr()
  assert "shown line" in out.out + out.err and "hidden line" not in out.out + out.err


def test_status_lines_go_to_stderr_unless_turned_off(capsys):
  progress.say("compiling the training step", enabled=False)
  progress.say("compiling the evaluation step")
  out = capsys.readouterr()
  assert out.err == "compiling the evaluation step\n" and out.out == ""
