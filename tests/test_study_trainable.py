"""The trainable's quiet hook: interrupts raised inside callbacks print nothing, other errors still do."""

import sys
import weakref

from deepdiff_study.trainable import quiet_interrupts_in_callbacks


class _Thing:
    pass


def _unraisable_from_a_weakref_callback(exc: BaseException) -> None:
    def callback(_ref):
        raise exc

    thing = _Thing()
    ref = weakref.ref(thing, callback)  # noqa: F841 (kept alive until the object goes)
    del thing  # the callback runs now; Python can only hand its exception to sys.unraisablehook


def test_interrupts_in_callbacks_are_quiet_and_other_errors_are_not(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(type(u.exc_value)))
    quiet_interrupts_in_callbacks()
    quiet_interrupts_in_callbacks()  # a second call does not wrap it twice
    for exc in (KeyboardInterrupt(), SystemExit(1), ValueError("a real bug")):
        _unraisable_from_a_weakref_callback(exc)
    assert seen == [ValueError]
