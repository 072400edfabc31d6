"""Budgets of the engine's socket thread (bridge/admission.py), on an injected clock."""
from __future__ import annotations

import logging

from bridge.admission import (LOG_INTERVAL, REFUSALS_BURST, REFUSALS_PER_SECOND, TRACKED_IDENTITIES,
                              TRUST_AFTER_REFUSAL, Admission, Bucket, RefusalLog)


def test_a_bucket_gives_its_burst_then_its_rate():
    bucket = Bucket(rate=2.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.empty(0.4) and not bucket.empty(0.5)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert sum(bucket.take(10.0) for _ in range(10)) == 3, "refills up to the burst, never beyond"


def test_an_identity_refused_too_often_is_dropped_until_its_budget_refills():
    admission = Admission()
    bad, new = b"bad", b"new"
    for _ in range(int(REFUSALS_BURST)):
        assert admission.admit(bad, 0.0)
        admission.refused(bad, 0.0)
    assert not admission.admit(bad, 0.0) and admission.dropped == 1
    assert admission.admit(new, 0.0), "an identity never refused is heard (a new plugin's HELLO)"
    assert admission.admit(bad, 1.0 / REFUSALS_PER_SECOND), "one refusal's worth later it may try again"


def test_trust_is_for_session_owners_not_refused_lately():
    admission = Admission()
    assert admission.trusted(b"a", owns_session=True, now=0.0)
    assert not admission.trusted(b"b", owns_session=False, now=0.0)
    admission.refused(b"a", 1.0)
    assert not admission.trusted(b"a", True, 1.0 + TRUST_AFTER_REFUSAL - 0.1)
    assert admission.trusted(b"a", True, 1.0 + TRUST_AFTER_REFUSAL + 0.1)


def test_identities_cycling_share_one_global_budget():
    admission = Admission(global_rate=50.0)
    for n in range(50):                             # 50 identities, one refusal each
        admission.refused(b"id%d" % n, 0.0)
    assert not admission.admit(b"id0", 0.0), "the global budget is spent: refused identities wait"
    assert admission.admit(b"fresh", 0.0)


def test_the_tables_stay_bounded_whatever_the_identities():
    admission = Admission(global_rate=1e9)
    for n in range(3 * TRACKED_IDENTITIES):
        admission.refused(n.to_bytes(8, "little"), float(n))
    assert len(admission._buckets) == TRACKED_IDENTITIES
    assert len(admission._refused_at) <= 2 * TRACKED_IDENTITIES


def test_refusal_log_writes_one_line_per_identity_per_interval_and_counts_the_rest(caplog):
    log = RefusalLog(logging.getLogger("test.refusals"), lines_per_second=100.0)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        written = [log.refused(b"\x01", logging.WARNING, "bad", t * 0.01) for t in range(1000)]   # 10 s
    assert sum(written) == 10 / LOG_INTERVAL, written.count(True)
    assert "(499 more refusals from it not logged since)" in caplog.text


def test_refusal_log_has_an_overall_line_budget(caplog):
    log = RefusalLog(logging.getLogger("test.refusals"), interval=5.0, lines_per_second=2.0)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        written = sum(log.refused(n.to_bytes(4, "little"), logging.WARNING, "bad", 0.0) for n in range(1000))
    assert written == 10, "2 lines/s over a 5 s burst"
