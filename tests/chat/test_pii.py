"""PII detection and redaction (``chat.guards.pii``): every kind is found in its usual formats and
replaced by its placeholder, hard negatives and our own identifiers pass, overlaps resolve to the
more specific kind, fingerprints are keyed and normalised, the allowlist works by fingerprint and
by pattern, and the StreamRedactor emits prose at once, never a clear value, and exactly what
``redact_pii`` makes of the whole text. Last, the labelled set of ``bench/pii_bench`` keeps its
precision and recall."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from bench.pii_bench import accuracy, evaluate, load_sentences
from chat.guards.pii import (
    EMPTY_ALLOWLIST,
    KINDS,
    PLACEHOLDERS,
    Allowlist,
    PiiMatch,
    StreamRedactor,
    find_pii,
    redact_pii,
    value_fingerprint,
)

POSITIVES = [
    # (text, kind, value)
    ("Write to jane.doe@example.com please", "email", "jane.doe@example.com"),
    ("cc billing+nimbus@acme-corp.co.uk.", "email", "billing+nimbus@acme-corp.co.uk"),
    ("Unicode domain anna@müller.de works?", "email", "anna@müller.de"),
    ("Call me on +44 20 7946 0958 after 5pm", "phone", "+44 20 7946 0958"),
    ("E.164: +14155552671", "phone", "+14155552671"),
    ("US office (415) 555-2671", "phone", "(415) 555-2671"),
    ("toll free 1-800-555-0199", "phone", "1-800-555-0199"),
    ("my number is 020 7946 0958", "phone", "020 7946 0958"),
    ("Handy 0151 23456789", "phone", "0151 23456789"),
    ("au 06 12 34 56 78 merci", "phone", "06 12 34 56 78"),
    ("WhatsApp 98765 43210", "phone", "98765 43210"),
    ("Telefone (11) 91234-5678", "phone", "(11) 91234-5678"),
    ("From Europe dial 0044 20 7946 0958", "phone", "0044 20 7946 0958"),
    ("SSN 078-05-1120 on the form", "ssn", "078-05-1120"),
    ("social security number 536 22 1234", "ssn", "536 22 1234"),
    ("SSN: 536221234", "ssn", "536221234"),
    ("card 4111 1111 1111 1111 exp 09/27", "card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "card", "4111-1111-1111-1111"),
    ("card 4111111111111111", "card", "4111111111111111"),
    ("card 4111.1111.1111.1111", "card", "4111.1111.1111.1111"),
    ("Amex 3782 822463 10005 please", "card", "3782 822463 10005"),
    ("Amex 378282246310005", "card", "378282246310005"),
    ("VISA 4111 - 1111 - 1111 - 1111 declined", "card", "4111 - 1111 - 1111 - 1111"),
    ("refund to GB82 WEST 1234 5698 7654 32.", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN: DE89370400440532013000", "iban", "DE89370400440532013000"),
    ("FR14 2004 1010 0505 0001 3M02 606 is mine", "iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban nl91abna0417164300", "iban", "nl91abna0417164300"),
    ("my iban is gb82 west 1234 5698 7654 32", "iban", "gb82 west 1234 5698 7654 32"),
    ("the CVV is 456.", "card", "456"),
    ("cvc: 1234 on the back", "card", "1234"),
    (
        "post to https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/aBcDeFgHiJkLmNoPqRsTuVwX",
        "secret",
        "hooks.slack.com/services/T0AB12CD3/B0EF45GH6/aBcDeFgHiJkLmNoPqRsTuVwX",
    ),
    ("My IP is 203.0.113.42.", "ip", "203.0.113.42"),
    ("webdav http://192.168.0.50:8080/files", "ip", "192.168.0.50"),
    ("address 2001:db8:85a3::8a2e:370:7334 in the log", "ip", "2001:db8:85a3::8a2e:370:7334"),
    ("binds to ::1 only", "ip", "::1"),
    (
        "key sk-proj-4fT9xQ2mLp8Rz1VbN7cKd3EhYw6Ua0Gs",
        "secret",
        "sk-proj-4fT9xQ2mLp8Rz1VbN7cKd3EhYw6Ua0Gs",
    ),
    ("stripe sk_live_51HqLyjWDarjtT1zdp7dcXyz123", "secret", "sk_live_51HqLyjWDarjtT1zdp7dcXyz123"),
    (
        "gh ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "secret",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "slack xoxb-2048913452-4093829471-QxT7vK9pLm2RzA4bN8cW",
        "secret",
        "xoxb-2048913452-4093829471-QxT7vK9pLm2RzA4bN8cW",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE", "secret", "AKIAIOSFODNN7EXAMPLE"),
    (
        "maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "secret",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    ),
    ("gitlab glpat-xK9mP2vQ7rT4wZ1yB6nC", "secret", "glpat-xK9mP2vQ7rT4wZ1yB6nC"),
    (
        "Authorization: Bearer 7fK2pQ9xL4mZ8vR1tY6wB3nC0dH5jS",
        "secret",
        "7fK2pQ9xL4mZ8vR1tY6wB3nC0dH5jS",
    ),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9Pl",
        "secret",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9Pl",
    ),
    ("password: hunter2", "secret", "hunter2"),
    ("login jdoe pwd=S3cr3t!Pass", "secret", "S3cr3t!Pass"),
    ("my password is Summer2024!", "secret", "Summer2024!"),
    ("here is the token Xk9fT2LqPz8Rw3Vb7NcQ4mYs", "secret", "Xk9fT2LqPz8Rw3Vb7NcQ4mYs"),
]

NEGATIVES = [
    "Ticket TKT-4F7A2C about order ORD-2024-88812: error NB-1042 since v2.18.0 "
    "on 2026-11-28, invoice $1,299.00, 3.14.2 desktop, 250 GB.",
    "Following up on TKT-000123 and order #A-100234.",
    "My session is sess_9f8E7d6C5b4A3f2E1d0C9b8A7fXyZ12, message msg_0a1b2c3d4e5f60718293a4b5.",
    "request req_4f2a9c1e0b3d5a7f9e1c3b5d, workflow wf_exec_9c8b7a6d5e4f3a2b1c0d9e8f",
    "sessionId=sess_Qm3kT8vXp2LwR9zY4bN7cJ1hF6dS0aE5 in the URL",
    "My card 4111 1111 1111 1112 is a fake one.",  # Luhn fails
    "IBAN GB00 WEST 1234 5698 7654 32 was rejected",  # bad check digits
    "DE00370400440532013000 is what the app showed",
    "gb82 west 1234 5698 7654 33 has a bad check digit",
    "I have 123 cvs receipts and a cvv 12345 that is too long",
    "de12 and then the rest of the words in this sentence follow",
    "version 1.2.3.4 and v1.2.3.4 and the 10.2.3.4-beta build",
    "driver 1.2.3.4 is installed; upgrade from 4.0.0.12 to 4.1.0.3; the file is 2.4.1.0.zip",
    "Running Nimbus Desktop 4.2.0.1 since the update to 5.0.0.12",
    "Sync stuck at 87% since 2026-11-28 14:03:22 UTC, again on 28.11.2026 and 11/28/2026.",
    "The Pro plan is €119,88 per year or $9.99/month; 50% off; 1,048,576 files, 3.2 TB.",
    "Storage shows 4155552671 bytes used",
    "Order number 2125550123 was never shipped; invoice no. 2026112814 shows twice.",
    "Our PO number is 4500123456 and the DUNS number is 15-048-3782.",
    "Tracking 1Z999AA10123456784 and USPS 9400 1000 0000 0000 0000 00.",
    "Your verification code is 482 913; PIN 4821; extension 4021.",
    "Error at 12:30:45, MAC 00:1A:2B:3C:4D:5E, code 0x80070005.",
    "UUID 550e8400-e29b-41d4-a716-446655440000, sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "Files Q3_Report_FINAL_v2_2024.xlsx and MyVacationPhotos2024Backup",
    "Reset your password: open Settings. The password is incorrect. The API token expired.",
    "Link https://share.nimbus.example/s/Xk9fT2LqPz8Rw3Vb7NcQ4mYs asks for a password.",
    "We've been customers since 2019; between 2019 and 2024 we uploaded 12000 photos.",
    "Set password=<your new password> and password: ******** in the file.",
    "Stripe charge ch_3MmlLrLkdIwHu7ix0snN0B15 for customer cus_NffrFeUfNV2Hib.",
]


def redacted(text: str, *values: tuple[str, str]) -> str:
    for kind, value in values:
        text = text.replace(value, PLACEHOLDERS[kind])
    return text


# --- detection and redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "value"), POSITIVES)
def test_each_kind_is_found_and_replaced_by_its_placeholder(text, kind, value):
    result = redact_pii(text)
    assert [(m.kind, m.value) for m in result.matches] == [(kind, value)]
    match = result.matches[0]
    assert text[match.start : match.end] == value
    assert result.text == redacted(text, (kind, value))
    assert result.kinds == (kind,)


def test_every_kind_is_covered_by_the_positive_cases():
    assert {kind for _text, kind, _value in POSITIVES} == set(KINDS)


def test_a_card_with_mixed_separators_loses_every_digit():
    text = "Charge card 4111-1111 1111.1111 for the team plan"
    result = redact_pii(text)
    assert result.text == "Charge card [CARD_REDACTED] for the team plan"
    assert not re.search(r"\d", result.text)


def test_a_luhn_valid_card_inside_a_longer_run_is_cut_out():
    text = "ref 12 4111 1111 1111 1111 cvc"
    assert redact_pii(text).text == "ref 12 [CARD_REDACTED] cvc"


@pytest.mark.parametrize("text", NEGATIVES)
def test_hard_negatives_pass_untouched(text):
    result = redact_pii(text)
    assert result.matches == ()
    assert result.text == text


def test_several_kinds_in_one_message_keep_their_original_offsets():
    text = (
        "Hi, I'm jane.doe@example.com, card 4111-1111 1111.1111, "
        "call me on +44 20 7946 0958 please."
    )
    result = redact_pii(text)
    assert result.text == (
        "Hi, I'm [EMAIL_REDACTED], card [CARD_REDACTED], call me on [PHONE_REDACTED] please."
    )
    assert result.kinds == ("card", "email", "phone")
    for match in result.matches:
        assert text[match.start : match.end] == match.value
    assert [m.start for m in result.matches] == sorted(m.start for m in result.matches)


def test_overlaps_resolve_to_the_more_specific_kind():
    # The digits of an IBAN hold a Luhn-valid run now and then; the IBAN wins.
    iban = "DE89 3704 0044 0532 0130 00"
    assert [(m.kind, m.value) for m in find_pii(f"IBAN {iban} ok")] == [("iban", iban)]
    # A password inside a connection string, not an e-mail address "Kq8v@db.example".
    text = "postgres://app:Kq8vLz2pW@db.example.com:5432/files"
    assert [(m.kind, m.value) for m in find_pii(text)] == [("secret", "Kq8vLz2pW")]
    # A provider key is a secret even though its tail is random.
    assert [m.kind for m in find_pii("OPENAI_API_KEY=sk-9aBcDeFgHiJkLmNoPqRsT1uVwXyZ2")] == [
        "secret"
    ]


def test_a_match_never_shows_its_value_in_its_repr():
    (match,) = find_pii("card 4111 1111 1111 1111")
    assert "4111" not in repr(match)
    assert match.value == "4111 1111 1111 1111"


def test_text_without_pii_is_returned_as_is():
    assert redact_pii("") == redact_pii("", EMPTY_ALLOWLIST)
    assert redact_pii("How do I share a folder?").text == "How do I share a folder?"


# --- fingerprints and the allowlist --------------------------------------------------------------


def test_fingerprints_are_keyed_and_normalised(settings):
    settings.SECRET_KEY = "key-one"
    card = value_fingerprint("card", "4111 1111 1111 1111")
    assert re.fullmatch(r"[0-9a-f]{64}", card)
    assert value_fingerprint("card", "4111-1111.1111 1111") == card
    assert value_fingerprint("phone", "4111111111111111") != card  # the kind is part of it
    assert value_fingerprint("email", "Jane.Doe@Example.com") == value_fingerprint(
        "email", "jane.doe@example.com"
    )
    assert value_fingerprint("iban", "gb82 west 1234 5698 7654 32") == value_fingerprint(
        "iban", "GB82WEST12345698765432"
    )
    assert value_fingerprint("secret", "Abc") != value_fingerprint("secret", "abc")
    settings.SECRET_KEY = "key-two"
    assert value_fingerprint("card", "4111 1111 1111 1111") != card
    match = PiiMatch("card", 0, 19, "4111 1111 1111 1111")
    assert match.fingerprint() == value_fingerprint("card", "4111111111111111")


def test_allowlist_by_fingerprint_lets_that_value_through_in_any_format(settings):
    settings.SECRET_KEY = "test-key"
    allowlist = Allowlist(
        fingerprints=frozenset({value_fingerprint("email", "support@nimbus.example")})
    )
    text = "Write to Support@Nimbus.example, I'm at bob@example.org."
    assert redact_pii(text, allowlist).text == (
        "Write to Support@Nimbus.example, I'm at [EMAIL_REDACTED]."
    )
    assert [m.value for m in find_pii(text, allowlist)] == ["bob@example.org"]


def test_allowlist_by_pattern_fullmatches_the_clear_value():
    allowlist = Allowlist(patterns=(re.compile(r"\+1 800 555 \d{4}"),))
    text = "Call +1 800 555 0199 or +1 415 555 2671."
    assert redact_pii(text, allowlist).text == "Call +1 800 555 0199 or [PHONE_REDACTED]."
    partial = Allowlist(patterns=(re.compile(r"\+1 800"),))  # a prefix is not a full match
    assert redact_pii(text, partial).text == "Call [PHONE_REDACTED] or [PHONE_REDACTED]."


# --- streaming -----------------------------------------------------------------------------------


def stream(text: str, pieces: list[str], allowlist: Allowlist = EMPTY_ALLOWLIST) -> list[str]:
    assert "".join(pieces) == text
    redactor = StreamRedactor(allowlist)
    return [redactor.feed(piece) for piece in pieces] + [redactor.finish()]


def split_at(text: str, *cuts: int) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


AWKWARD = [
    # (text, clear values that must never be emitted)
    (
        "Sure! I have your card as 4111-1111 1111.1111 and email jane.doe@example.com, thanks.",
        ("4111", "1111.1111", "jane.doe", "example.com"),
    ),
    ("Refund to GB82 WEST 1234 5698 7654 32 today.", ("GB82", "WEST 1234", "7654")),
    ("Call +44 20 7946 0958 or (415) 555-2671 now", ("+44", "7946", "555-2671", "(415)")),
    ("SSN 078-05-1120 noted", ("078-05", "1120")),
    ("password: hunter2 and key sk_live_51HqLyjWDarjtT1zdp7dcXyz123", ("hunter2", "sk_live")),
]


@pytest.mark.parametrize(("text", "clear"), AWKWARD)
def test_stream_fed_in_small_pieces_never_emits_a_clear_value(text, clear):
    full = redact_pii(text)
    for size in (1, 2, 3, 5, 7):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        emitted = ""
        for piece in stream(text, pieces):
            emitted += piece
            for value in clear:
                assert value not in emitted, (size, value)
        assert emitted == full.text


def test_a_card_split_across_deltas_is_held_back_until_it_is_complete():
    redactor = StreamRedactor()
    assert redactor.feed("Your card 4111 11") == "Your card "
    assert redactor.feed("11 1111 ") == ""
    assert redactor.feed("1111 is on") == "[CARD_REDACTED] is "
    assert redactor.finish() == "on"
    assert [(m.kind, m.start, m.end) for m in redactor.matches] == [("card", 10, 29)]


def test_an_email_split_mid_way_is_held_back():
    redactor = StreamRedactor()
    out = [redactor.feed("Mail jane.d"), redactor.feed("oe@exam"), redactor.feed("ple.com no")]
    assert out == ["Mail ", "", ""]  # held with the unfinished word that follows it
    assert redactor.feed("w, ") == "[EMAIL_REDACTED] now, "
    assert redactor.finish() == ""


def test_prose_is_emitted_at_once():
    redactor = StreamRedactor()
    emitted = redactor.feed("Hello there, how ")
    assert "Hello there," in emitted
    assert emitted == "Hello there, how "
    assert redactor.feed("are yo") == "are "
    assert redactor.feed("u?") == ""
    assert redactor.finish() == "you?"


def test_stream_matches_have_offsets_in_the_whole_raw_text():
    text = "Mail jane@example.com or call +1 415 555 2671 today."
    redactor = StreamRedactor()
    for i in range(0, len(text), 4):
        redactor.feed(text[i : i + 4])
    redactor.finish()
    assert [(m.kind, m.start, m.end, m.value) for m in redactor.matches] == [
        (m.kind, m.start, m.end, m.value) for m in find_pii(text)
    ]


def test_stream_applies_the_allowlist():
    allowlist = Allowlist(patterns=(re.compile(r"support@nimbus\.example"),))
    text = "Write to support@nimbus.example or me at bob@example.org please."
    assert (
        "".join(stream(text, split_at(text, 13, 30, 47), allowlist))
        == redact_pii(text, allowlist).text
    )


def test_stream_output_equals_redact_pii_on_the_labelled_set_at_random_splits():
    rng = random.Random(20261129)
    texts = [s.text for s in load_sentences()]
    texts.append(" ".join(texts[:80]))  # a long answer, PII throughout
    for text in texts:
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, len(text) // 4)))
        assert "".join(stream(text, split_at(text, *cuts))) == redact_pii(text).text, text


# --- the labelled set ----------------------------------------------------------------------------


def test_labelled_set_keeps_precision_and_recall_of_97_percent():
    sentences = load_sentences()
    assert len(sentences) >= 300
    assert sum(1 for s in sentences if not s.labels) >= 120
    for kind in KINDS:
        assert sum(1 for s in sentences for label in s.labels if label.kind == kind) >= 25, kind
    overall = accuracy(evaluate(sentences))["all"]
    assert overall["precision"] >= 0.97
    assert overall["recall"] >= 0.97


def test_a_kind_pattern_allows_values_of_its_kind_only() -> None:
    allowlist = Allowlist(kind_patterns=(("email", re.compile(r".*@nimbus\.example")),))
    kept = redact_pii("mail ops@nimbus.example", allowlist)
    assert kept.text == "mail ops@nimbus.example" and not kept.matches
    other = Allowlist(kind_patterns=(("phone", re.compile(r".*@nimbus\.example")),))
    assert redact_pii("mail ops@nimbus.example", other).text == "mail [EMAIL_REDACTED]"


def test_words_with_digits_in_them_are_not_held_back() -> None:
    """Streaming "token0 token1 …" (or "build42x") emits each word once the next one starts;
    grouped numbers are still held until they are whole."""
    redactor = StreamRedactor()
    out = [redactor.feed(delta) for delta in ("token0", " token1", " token2", " call")]
    assert "".join(out) == "token0 token1 token2 "
    held = StreamRedactor()
    out = [held.feed(delta) for delta in ("card", " 4111", " 1111", " 1111")]
    assert "".join(out) == "card "
    assert held.feed(" 1111 thanks") + held.finish() == "[CARD_REDACTED] thanks"
