"""The event archive: the consumer, run as a program and SIGKILLed at chosen steps of writing a
file and at random moments while events are appended, leaves an archive holding every event
exactly once in seq order (local directory, and S3 on moto's server); materialize reads an
archive directory (and s3://) as it reads the single events file."""
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from roundhouse.features.commands import consume_main, materialize_main
from roundhouse.features.language import loader
from roundhouse.features.targets.online import replay, stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.testing import gen
from roundhouse.features.transport import archive, consume, eventlog, events, location
from roundhouse.testing import s3_server
from roundhouse.testing.redis_server import redis_url  # noqa: F401  (pytest fixture)

FEATURES = pathlib.Path(__file__).parents[1]
DEFS = FEATURES / "testdata" / "kitchen_sink.feat"
PROGRAM = loader.load(DEFS)

# Runs consume_main in a child process that SIGKILLs itself at the n-th time it reaches a step
# of the archive's (or the store's) write path: KILL_AT="step:n".
DRIVER = r'''
import os, signal, sys
from roundhouse.features.commands import consume_main
from roundhouse.features.targets.online import stores
from roundhouse.features.transport import archive

step, _, n = os.environ.get("KILL_AT", "").partition(":")
seen = [0]

def hit():
    seen[0] += 1
    return seen[0] == int(n)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if step == "mid_temp":          # half of the temp file written
    real_write = archive._write_temp
    def write(path, data):
        if hit():
            real_write(path, memoryview(data)[: len(data) // 2])
            die()
        real_write(path, data)
    archive._write_temp = write
elif step in ("before_rename", "after_rename"):
    real_publish = archive._publish
    def publish(tmp, final):
        h = hit()
        if h and step == "before_rename":
            die()
        real_publish(tmp, final)
        if h:
            die()
    archive._publish = publish
elif step in ("mid_put", "after_put"):
    real_put = archive._put
    def put(fs, path, data):
        h = hit()
        if h and step == "mid_put":
            out = fs.open_output_stream(path)
            out.write(memoryview(data)[: len(data) // 2])
            die()
        real_put(fs, path, data)
        if h:
            die()
    archive._put = put
elif step == "after_store_commit":   # the store ahead of the archive
    real_commit = stores.MemoryStore.commit
    def commit(self, position=None):
        real_commit(self, position)
        if hit():
            die()
    stores.MemoryStore.commit = commit
sys.exit(consume_main.main(sys.argv[1:]))
'''


def _events(n, seed):
    table = events.conform(gen.generate(PROGRAM, n, seed), PROGRAM)
    d = table.to_pylist()
    for e, t in zip(d, pc.cast(table.column("event_time"), "int64").to_pylist()):
        e["event_time"] = t
    return table, d


class Appender:
    def __init__(self, log, evs):
        self.log, self.evs, self.n = log, evs, 0

    def append(self, k):
        k = min(k, len(self.evs) - self.n)
        if k > 0:
            self.log.append(self.evs[self.n:self.n + k])
            self.n += k
        return k


def _start(args, tmp_path, kill_at="", env=None):
    out = open(tmp_path / "consume.out", "ab")
    return subprocess.Popen(
        [sys.executable, "-S", "-c", DRIVER, *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(sys.path),
             "KILL_AT": kill_at},
        stdout=out, stderr=subprocess.STDOUT)


def _kill_while_appending(proc, appender, rng, kill_after=None, budget=600):
    """Append events in small chunks while the consumer runs; SIGKILL it after `kill_after`
    seconds, or wait for it to kill itself. Returns its exit code."""
    start, appended = time.monotonic(), 0
    while proc.poll() is None:
        if kill_after is not None and time.monotonic() - start >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        if appended < budget:
            appended += appender.append(rng.randint(5, 40))
        time.sleep(rng.uniform(0.005, 0.03))
        assert time.monotonic() - start < 120, "the consumer never reached its kill point"
    return proc.wait(timeout=60)


def _check_archive(where, table, fs=None):
    """Every event once, in seq order, in contiguous non-overlapping files."""
    got = events.read(where, PROGRAM)
    assert got.column("seq").to_pylist() == table.column("seq").to_pylist()
    assert got.equals(table)
    if fs is not None:
        root = location.resolve(where)[1]
        ps = archive.parts(fs, root, where)
        assert sum(pq.read_metadata(fs.open_input_file(p.path)).num_rows for p in ps) \
            == table.num_rows
        names = [os.path.basename(i.path) for i in
                 fs.get_file_info(pafs.FileSelector(root))]
        assert all(archive.NAME.match(n) or n == archive.LOCK for n in names), names
        return ps


def _uninterrupted_state(table):
    store = stores.MemoryStore(OnlineProgram(PROGRAM))
    replay.replay_table(PROGRAM, table, store)
    return store


def test_sigkill_at_every_step_loses_nothing_and_writes_nothing_twice(tmp_path):
    rng = random.Random(11)
    # Enough events that no step can run the log dry before its kill point (10 steps of at
    # most 150 + 600 appended): how many a step appends before its kill depends on the load.
    table, evs = _events(8000, 5)
    log = eventlog.LocalLog(tmp_path / "events.jsonl")
    appender = Appender(log, evs)
    snap, arch = tmp_path / "state.snapshot", tmp_path / "archive"
    args = ["--defs", str(DEFS), "--log", str(log.path), "--snapshot", str(snap),
            "--archive", str(arch), "--archive-max-events", "97", "--archive-max-seconds",
            "0.2", "--batch", "40", "--poll", "0.01", "--follow"]
    steps = ["mid_temp:2", "before_rename:1", "after_rename:3", "after_store_commit:4",
             "random", "mid_temp:1", "fresh_store", "random", "after_rename:1", "random"]
    for step in steps:
        appender.append(150)
        if step == "fresh_store":  # a lost snapshot: the store starts over, the archive not
            snap.unlink()
        if step in ("random", "fresh_store"):
            rc = _kill_while_appending(_start(args, tmp_path), appender, rng,
                                       kill_after=rng.uniform(0.3, 1.0))
        else:
            rc = _kill_while_appending(_start(args, tmp_path, step), appender, rng)
        assert rc == -signal.SIGKILL, (step, (tmp_path / "consume.out").read_text()[-3000:])
        if step.startswith(("mid_temp", "before_rename")):
            assert any(n.endswith(archive.TEMP_SUFFIX) for n in os.listdir(arch)), step
        # What a killed archiver leaves is a prefix of the log: no gap, no event twice.
        if list(arch.glob("*.parquet")):
            got = events.read(str(arch), PROGRAM)
            assert got.equals(table.slice(0, got.num_rows)), step
    assert appender.n >= 1500
    # The rest of the log, and a run to the end (it removes the temp files of killed writes).
    while appender.append(500):
        pass
    final = subprocess.run([sys.executable, "-S", "-m",
                            "roundhouse.features.commands.consume_main",
                            *[a for a in args if a != "--follow"]],
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert not [n for n in os.listdir(arch) if n.startswith(".events-")]
    ps = _check_archive(str(arch), table, pafs.LocalFileSystem())
    assert len(ps) > len(steps)
    # The online state, crashes and a lost snapshot included, is one uninterrupted pass's.
    want, got = _uninterrupted_state(table), stores.MemoryStore(OnlineProgram(PROGRAM), snap)
    got.online.sweep(want.states, want.meta)
    got.online.sweep(got.states, got.meta)
    assert got.states == want.states and got.meta == want.meta


def test_rotation_by_size_and_by_time_and_resume_in_process(tmp_path):
    table, evs = _events(500, 2)
    now = [0.0]
    a = archive.Archive(PROGRAM, tmp_path / "a", max_events=100, max_seconds=5,
                        clock=lambda: now[0])
    assert (a.position, a.last_seq, a.room()) == (None, None, 100)
    a.add(evs[:60], 1)
    assert a.files == 0 and a.room() == 40
    now[0] = 4.9
    assert a.maybe_flush() is None
    now[0] = 5.0
    assert a.maybe_flush() == archive.file_name(evs[0]["seq"], evs[59]["seq"])
    a.add(evs[60:160], 2)  # 100 events: full
    assert a.files == 2 and a.buffered == 0
    a.add(evs[100:200], 3)  # 60 of them already archived: skipped by seq
    assert a.buffered == 40
    with pytest.raises(archive.ArchiveError, match="another archiver"):
        archive.Archive(PROGRAM, tmp_path / "a")
    a.close()  # the buffer was never written: as after a crash
    again = archive.Archive(PROGRAM, tmp_path / "a", max_events=1000)
    assert (again.position, again.last_seq, again.files) == (2, evs[159]["seq"], 2)
    again.add(evs[150:], 4)
    again.flush()
    _check_archive(str(tmp_path / "a"), table)


def test_archive_alone_and_archive_behind_the_store(tmp_path, capsys):
    table, evs = _events(400, 9)
    log = eventlog.LocalLog(tmp_path / "log.jsonl")
    log.append(evs)
    base = ["--defs", str(DEFS), "--log", str(log.path)]
    # The store consumed everything before the archive existed: the archive starts at the
    # log's beginning and the store skips what it has.
    assert consume_main.main(base + ["--snapshot", str(tmp_path / "snap")]) == 0
    assert consume_main.main(base + ["--snapshot", str(tmp_path / "snap"), "--archive",
                                     str(tmp_path / "a"), "--archive-max-events", "150"]) == 0
    out = capsys.readouterr().out
    assert '"archived": 400, "archive_files": 3' in out
    _check_archive(str(tmp_path / "a"), table)
    assert consume_main.main(base + ["--store", "none", "--archive", str(tmp_path / "b")]) == 0
    _check_archive(str(tmp_path / "b"), table)
    assert consume_main.main(base + ["--store", "none"]) == 1
    assert "--store none needs --archive" in capsys.readouterr().err
    ev = OnlineProgram(PROGRAM)
    store = stores.MemoryStore(ev)
    assert consume.start_position(store, archive.Archive(PROGRAM, tmp_path / "b")) is None


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server.s3_server() as endpoint:
        yield endpoint


def test_s3_archive_survives_sigkill_and_materializes_like_the_file(tmp_path, s3_endpoint,
                                                                     monkeypatch):
    s3_server.reset(s3_endpoint)
    env = s3_server.client_env(s3_endpoint)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **s3_server.S3_CLIENT_ARGS)
    s3.create_bucket(Bucket="events")
    rng = random.Random(4)
    table, evs = _events(3600, 17)  # 4 steps of at most 120 + 600: never dry before a kill point
    log = eventlog.LocalLog(tmp_path / "events.jsonl")
    appender = Appender(log, evs)
    uri = "s3://events/archive/kitchen"
    args = ["--defs", str(DEFS), "--log", str(log.path), "--snapshot", str(tmp_path / "snap"),
            "--archive", uri, "--archive-max-events", "89", "--batch", "30", "--poll", "0.01",
            "--follow"]
    for step in ["mid_put:2", "after_put:1", "random", "after_put:2"]:
        appender.append(120)
        proc = _start(args, tmp_path, "" if step == "random" else step, env)
        rc = _kill_while_appending(proc, appender, rng,
                                   kill_after=rng.uniform(0.5, 1.2) if step == "random" else None)
        assert rc == -signal.SIGKILL, (step, (tmp_path / "consume.out").read_text()[-3000:])
    while appender.append(500):
        pass
    final = subprocess.run([sys.executable, "-S", "-m",
                            "roundhouse.features.commands.consume_main",
                            *[a for a in args if a != "--follow"]],
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    fs, _ = location.resolve(uri)
    ps = _check_archive(uri, table, fs)
    assert len(ps) >= 1200 // 89
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="events")["Contents"]]
    assert all(archive.NAME.match(k.rsplit("/", 1)[1]) for k in keys), keys
    # materialize over s3:// gives what it gives over the single events file.
    events.write(table, str(tmp_path / "events.parquet"))
    assert materialize_main.main(["--defs", str(DEFS), "--events", str(tmp_path / "events.parquet"),
                                  "--out", str(tmp_path / "one.parquet")]) == 0
    assert materialize_main.main(["--defs", str(DEFS), "--events", uri,
                                  "--out", str(tmp_path / "s3.parquet")]) == 0
    assert _plain(pq.read_table(tmp_path / "s3.parquet")).equals(
        _plain(pq.read_table(tmp_path / "one.parquet")))


def _plain(table):
    """The table without nullability flags (the engine may read a file as `not null`)."""
    return pa.Table.from_arrays(table.columns, names=table.column_names)


def _archive_dir(tmp_path, table, evs, max_events):
    a = archive.Archive(PROGRAM, tmp_path / "archive", max_events=max_events)
    i = 0
    while i < len(evs):  # as the consumer reads: at most the room left in the buffer
        k = min(50, a.room())
        a.add(evs[i:i + k], i + k)
        i += k
    a.flush()
    a.close()
    return tmp_path / "archive"


def test_materialize_from_an_archive_directory_equals_the_single_file(tmp_path, capsys):
    table, evs = _events(1500, 23)
    events.write(table, str(tmp_path / "events.parquet"))
    d = _archive_dir(tmp_path, table, evs, 130)
    assert len(list(d.glob("*.parquet"))) == 12
    base = ["--defs", str(DEFS)]
    assert materialize_main.main(base + ["--events", str(tmp_path / "events.parquet"),
                                         "--out", str(tmp_path / "one.parquet")]) == 0
    assert materialize_main.main(base + ["--events", str(d), "--out",
                                         str(tmp_path / "dir.parquet")]) == 0
    one, many = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "dir.parquet")
    assert one.num_rows and many.equals(one)
    assert many.column("seq").to_pylist() == sorted(many.column("seq").to_pylist())
    capsys.readouterr()

    # A file whose schema disagrees is named.
    bad_rows = events.schema(PROGRAM).empty_table().to_pylist() + [
        {**{k: None for k in events.schema(PROGRAM).names}, "seq": 10**9,
         "event_time": evs[-1]["event_time"], "stream": "order"}]
    bad = pa.Table.from_pylist(bad_rows, schema=events.schema(PROGRAM))
    bad = bad.set_column(bad.schema.get_field_index("qty"), "qty", pa.array(["many"]))
    pq.write_table(bad, d / "zz-late.parquet")
    assert materialize_main.main(base + ["--events", str(d), "--out",
                                         str(tmp_path / "x.parquet")]) == 1
    err = capsys.readouterr().err
    assert f"{d}/zz-late.parquet: column 'qty' is string, expected int64" in err
    pq.write_table(bad.drop_columns(["qty"]), d / "zz-late.parquet")
    assert materialize_main.main(base + ["--events", str(d), "--out",
                                         str(tmp_path / "x.parquet")]) == 1
    assert f"{d}/zz-late.parquet: missing column 'qty'" in capsys.readouterr().err
    # Two files holding the same events are refused, naming both.
    (d / "zz-late.parquet").unlink()
    first = sorted(d.glob("events-*.parquet"))[0]
    pq.write_table(pq.read_table(first), d / "copy.parquet")
    assert materialize_main.main(base + ["--events", str(d), "--out",
                                         str(tmp_path / "x.parquet")]) == 1
    capsys.readouterr()
    with pytest.raises(events.EventsError, match="overlaps") as exc:
        events.read(str(d), PROGRAM)
    assert "copy.parquet" in str(exc.value) and first.name in str(exc.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert materialize_main.main(base + ["--events", str(empty), "--out",
                                         str(tmp_path / "x.parquet")]) == 1
    assert "no *.parquet events files" in capsys.readouterr().err


def test_archive_of_a_redis_stream_resumes_at_its_last_file(tmp_path, redis_url):  # noqa: F811
    table, evs = _events(600, 31)
    log = eventlog.RedisStreamLog(redis_url, "t:archive")
    log.r.delete("t:archive")
    log.append(evs[:250])
    a = archive.Archive(PROGRAM, tmp_path / "a", max_events=100, source="redis-stream:t:archive")
    assert consume.run(None, log, batch=64, archive=a).archived == 250
    a.close()
    log.append(evs[250:])
    again = archive.Archive(PROGRAM, tmp_path / "a", max_events=100,
                            source="redis-stream:t:archive")
    assert again.last_seq == evs[249]["seq"] and isinstance(again.position, str)
    assert consume.run(None, log, batch=64, archive=again).events == 350
    again.close()
    _check_archive(str(tmp_path / "a"), table)
    with pytest.raises(archive.ArchiveError, match="mean nothing to log:"):
        archive.Archive(PROGRAM, tmp_path / "a", source="log:/x/events.jsonl")
