"""The verdict of a message's last allowed delivery, shared by the engine and participants."""

from __future__ import annotations

from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import ACK, Nak, Term, at_last_delivery

CODE = DeadLetterCode.HANDLER_FAILED


def test_a_nak_before_the_last_delivery_stays_a_nak() -> None:
    assert at_last_delivery(Nak("busy", 2.0), 2, 3, CODE) == Nak("busy", 2.0)


def test_a_nak_of_the_last_delivery_is_a_dead_letter_saying_why() -> None:
    assert at_last_delivery(Nak("busy"), 3, 3, CODE) == Term(
        CODE, "gave up after 3 deliveries: busy"
    )


def test_without_a_delivery_limit_a_nak_stays_a_nak() -> None:
    assert at_last_delivery(Nak("busy"), 50, -1, CODE) == Nak("busy")


def test_acks_and_dead_letters_are_final_already() -> None:
    term = Term(DeadLetterCode.MALFORMED, "not JSON")
    assert at_last_delivery(ACK, 3, 3, CODE) is ACK
    assert at_last_delivery(term, 3, 3, CODE) is term
