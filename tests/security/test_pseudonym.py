"""Keyed pseudonyms of patient ids: stable, key-dependent, applied by the worker right after
decoding, and mapped back only by the explicit ``hfrisk pseudonym map`` command."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from typer.testing import CliRunner

from hfrisk.cli import app as cli_app
from hfrisk.core.config import PseudonymSettings
from hfrisk.core.pseudonym import Pseudonymiser, pseudonym_map, pseudonymiser_from_settings
from hfrisk.stream.messages.dead_letter import DeadLetter
from hfrisk.stream.messages import encode_chunk
from hfrisk.stream.scoring.batch import InferenceRejected
from tests.stream.test_worker_unit import (
    MAX_BYTES,
    FakeScorer,
    MemoryPublisher,
    MemorySink,
    MemoryStore,
    good_chunks,
    make_worker,
    preprocessor,  # noqa: F401  (module fixture)
    records_of,
    run_batches,
)

KEY = b"0123456789abcdef-test-key"


def test_pseudonym_is_a_truncated_hmac_sha256_with_a_prefix():
    alias = Pseudonymiser(KEY).pseudonym("patient-0001")
    expected = "p-" + hmac.new(KEY, b"patient-0001", hashlib.sha256).hexdigest()[:20]
    assert alias == expected
    assert re.fullmatch(r"p-[0-9a-f]{20}", alias)


def test_pseudonyms_are_stable_distinct_and_depend_on_the_key():
    ids = [f"patient-{i:04d}" for i in range(2000)]
    first, again = Pseudonymiser(KEY), Pseudonymiser(bytes(KEY))
    aliases = [first(pid) for pid in ids]
    assert aliases == [again(pid) for pid in ids]
    assert len(set(aliases)) == len(ids)
    other = Pseudonymiser(b"another key, also long enough")
    assert not set(aliases) & {other(pid) for pid in ids}
    # Not a plain hash: knowing the id list without the key does not give the pseudonyms.
    assert aliases[1] != "p-" + hashlib.sha256(b"patient-0001").hexdigest()[:20]


def test_short_keys_and_odd_lengths_are_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    with pytest.raises(ValueError, match="hex_digits"):
        Pseudonymiser(KEY, hex_digits=8)
    assert "0123" not in repr(Pseudonymiser(KEY))


def test_settings_take_the_key_from_a_file(tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(KEY.decode() + "\n")
    settings = PseudonymSettings(enabled=True, key_file=key_file, prefix="pt_", hex_digits=32)
    alias = pseudonymiser_from_settings(settings)("patient-0001")
    assert alias == "pt_" + hmac.new(KEY, b"patient-0001", hashlib.sha256).hexdigest()[:32]
    assert pseudonymiser_from_settings(PseudonymSettings()) is None


def test_map_command_prints_the_table_and_writes_it_only_on_request(tmp_path, monkeypatch):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(KEY.decode())
    monkeypatch.setenv("HFRISK_PSEUDONYM__KEY_FILE", str(key_file))
    from hfrisk.core.config import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(cli_app, ["pseudonym", "map", "patient-0001", "patient-0002"])
        assert result.exit_code == 0, result.output
        expected = pseudonym_map(Pseudonymiser(KEY), ["patient-0001", "patient-0002"])
        assert result.stdout == "".join(f"{alias}\t{pid}\n" for alias, pid in expected.items())

        ids_file, out = tmp_path / "ids.txt", tmp_path / "map.tsv"
        ids_file.write_text("patient-0001\n\npatient-0002\n")
        result = runner.invoke(cli_app, ["pseudonym", "map", "--ids-file", str(ids_file), "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_text().splitlines() == [f"{a}\t{p}" for a, p in expected.items()]
        assert out.stat().st_mode & 0o777 == 0o600

        monkeypatch.delenv("HFRISK_PSEUDONYM__KEY_FILE")
        get_settings.cache_clear()
        result = runner.invoke(cli_app, ["pseudonym", "map", "patient-0001"])
        assert result.exit_code != 0 and "no pseudonym key" in result.output
    finally:
        get_settings.cache_clear()


def test_the_worker_replaces_ids_right_after_decoding(preprocessor):  # noqa: F811
    chunks = good_chunks(beds=2, records=2)
    raw_ids = {c.patient_id for c in chunks}
    pseudonymise = Pseudonymiser(KEY)
    sink, store, publisher = MemorySink(), MemoryStore(), MemoryPublisher()
    worker = make_worker(preprocessor, sink=sink, store=store, publisher=publisher)
    worker.pseudonymise = pseudonymise
    run_batches(worker, records_of([(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]), size=16)

    aliases = {pseudonymise(pid) for pid in raw_ids}
    assert sink.windows and {pid for pid, _ in sink.windows} == aliases
    assert set(store.saved) == aliases  # saved window buffers are keyed by pseudonym too
    scores = publisher.of("scores")
    assert scores
    for message in scores:
        assert not any(pid.encode() in message.key + message.value for pid in raw_ids)
        assert any(alias.encode() in message.value for alias in aliases)


def test_message_dead_letters_keep_the_producers_id_and_window_dead_letters_only_the_pseudonym(preprocessor):  # noqa: F811
    class Refusing(FakeScorer):
        async def infer(self, x):
            raise InferenceRejected("INVALID_ARGUMENT: refused")

    chunks = good_chunks(beds=1, records=1)
    raw_id = chunks[0].patient_id
    pseudonymise = Pseudonymiser(KEY)
    publisher = MemoryPublisher()
    worker = make_worker(preprocessor, publisher=publisher, scorer=Refusing())
    worker.pseudonymise = pseudonymise
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    messages.append((b"someone-else", messages[0][1]))  # key mismatch: a message dead letter
    run_batches(worker, records_of(messages), size=len(messages))

    letters = [DeadLetter.from_record(m.key, m.value, m.headers) for m in publisher.of("dead_letter")]
    by_kind = {kind: [d for d in letters if d.kind == kind] for kind in ("chunk", "window")}
    assert [d.reason for d in by_kind["chunk"]] == ["key_mismatch"]
    assert by_kind["chunk"][0].key == b"someone-else" and by_kind["chunk"][0].patient_id == raw_id
    assert by_kind["window"], "every window was refused by the scorer"
    for letter in by_kind["window"]:
        assert letter.key == pseudonymise(raw_id).encode() and letter.patient_id == pseudonymise(raw_id)
        assert raw_id.encode() not in b"".join([letter.key, letter.value, *(v for _, v in letter.headers())])
