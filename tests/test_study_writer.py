"""deepdiff_study.writer: calls run in order on one thread, the caller waits only for room, failures come
back to the caller, and nothing submitted is lost at a clean stop or at the process's exit."""

import subprocess
import sys
import threading
import time

import pytest

from deepdiff_study.writer import Writer


def test_calls_run_in_order_on_another_thread_and_the_caller_does_not_wait():
    writer, done, gate = Writer("t"), [], threading.Event()
    writer.submit(gate.wait)
    t0 = time.perf_counter()
    for i in range(100):
        writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    assert time.perf_counter() - t0 < 1.0 and done == [] and writer.waiting == 101  # held up behind the gate
    gate.set()
    writer.flush()
    assert done == [(i, "t") for i in range(100)] and writer.waiting == 0
    writer.close()


def test_a_full_queue_makes_the_caller_wait_for_room():
    writer, gate = Writer("t", limit=2), threading.Event()
    writer.submit(gate.wait)
    writer.submit(lambda: None)  # waits in the queue behind the gate, as does the next
    writer.submit(lambda: None)
    blocked = threading.Thread(target=writer.submit, args=(lambda: None,))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # no room
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    writer.close()


def test_a_failure_is_raised_to_the_caller_and_what_followed_it_is_dropped():
    writer, done = Writer("t"), []
    writer.submit(lambda: 1 / 0)
    writer.submit(lambda: done.append("after"))
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: done.append("later"))
    assert done == []


def test_close_runs_everything_submitted_and_a_later_submit_starts_again():
    writer, done = Writer("t"), []
    for i in range(50):
        writer.submit(lambda i=i: (time.sleep(0.001), done.append(i)))
    writer.close()
    assert done == list(range(50))
    writer.submit(lambda: done.append("again"))
    writer.close()
    assert done[-1] == "again"


def test_what_is_queued_when_the_process_exits_is_still_written(tmp_path):
    out = tmp_path / "out"
    code = (f"import time; from deepdiff_study.writer import Writer\n"
            f"w = Writer('t')\n"
            f"for i in range(20): w.submit(lambda i=i: (time.sleep(0.01), open({str(out)!r}, 'a').write(f'{{i}}\\n')))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert out.read_text().split() == [str(i) for i in range(20)]
