"""Session 24B: a migrate Job stopped at its ``activeDeadlineSeconds`` leaves a store the next upgrade completes.

Kubernetes stops the Job's pod (SIGTERM, then SIGKILL) at the deadline, whatever the migration is doing. Here
`veuctl db upgrade` is killed outright in 0024's batched backfill: its finished batches stay, the revision is not
recorded, the migration lock dies with the connection, and the next `veuctl db upgrade` backfills the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.store.test_migration_lock_timeout_session24B import _previous_release

PAUSE_KEY = 242424
AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
VEUCTL = [sys.executable, "-c", "from agent.cli import main; main()"]


@pytest.mark.postgres
def test_an_upgrade_killed_in_the_backfill_is_completed_by_the_next_one(pg_url: str) -> None:
    _previous_release(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for i in range(12):
            admin.execute(
                "INSERT INTO admission_decision (uid, decided_at, as_of, namespace, kind, name, operation, job_ref, "
                "customer_name, model_key, code, allowed, mode, chips, run_operations, message, pack_versions, detail) "
                "VALUES (%(n)s, %(at)s, '2026-11-02', 'tenant-ae', 'Job', %(n)s, 'CREATE', %(n)s, 'Emirates AI', 'm', "
                "'ALLOW', true, 'enforce', 8, 5e25, '', '{}', %(d)s)",
                {"n": f"job-{i}", "at": AT, "d": json.dumps({"hours": 100 + i})})
        # The backfill's first UPDATE waits on a lock the test holds, as a slow batch would.
        admin.execute("CREATE FUNCTION qa_pause() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      f"PERFORM pg_advisory_xact_lock({PAUSE_KEY}); RETURN NEW; END $$")
        admin.execute("CREATE TRIGGER qa_pause BEFORE UPDATE ON admission_decision FOR EACH ROW "
                      "EXECUTE FUNCTION qa_pause()")
        admin.execute("SELECT pg_advisory_lock(%(k)s)", {"k": PAUSE_KEY})
        env = {**os.environ, "VEU_DATABASE_URL": pg_url}
        job = subprocess.Popen([*VEUCTL, "db", "upgrade", "--json"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not admin.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %(k)s",
                    {"k": PAUSE_KEY}).fetchone()[0]:  # type: ignore[index]
                time.sleep(0.05)
            job.send_signal(signal.SIGKILL)  # the deadline: no cleanup of any kind
            job.wait(30)
        finally:
            if job.poll() is None:
                job.kill()
        admin.execute("SELECT pg_advisory_unlock(%(k)s)", {"k": PAUSE_KEY})
        admin.execute("DROP TRIGGER qa_pause ON admission_decision")
        # The killed session's backend goes with its socket, and with it the migration lock.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
                "pg_backend_pid() AND backend_type = 'client backend'").fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
        versions = {r[0] for r in admin.execute("SELECT version_num FROM alembic_version").fetchall()}
        assert "0024_decision_runs_until" not in versions
        again = subprocess.run([*VEUCTL, "db", "upgrade", "--json"], env=env, capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"] == "up to date"
        ends = dict(admin.execute("SELECT name, runs_until FROM admission_decision").fetchall())
        valid = admin.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                              "'ix_admission_decision_running'::regclass").fetchone()
    assert ends == {f"job-{i}": AT + timedelta(hours=100 + i) for i in range(12)}
    assert valid == (True,)
