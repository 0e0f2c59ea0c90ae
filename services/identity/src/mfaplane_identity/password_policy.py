"""What a new password must be (NIST SP 800-63B): 8 to 256 characters of any kind, no composition
rules, and not a value an attacker tries first.

That last part is zxcvbn's estimate of how many guesses the password takes: its lists of common
passwords, names and words, keyboard walks, dates, repeats and sequences, and the principal's own
email and name, so "Password123!", "qwertyuiop" and "ada@example.com1" are refused. The bar is
MIN_SCORE 2, at least 10^6 guesses: sign-in is throttled per account and per source, so that is
out of an online attacker's reach, while a passphrase of a few words clears it easily.

Only the first ESTIMATED_LENGTH characters are estimated: zxcvbn's time grows steeply with length
(a second for 256 repeated characters, in a request anyone with a reset link can make), and a
password whose first 64 characters are not guessable is not guessable.
"""

from __future__ import annotations

import asyncio

from zxcvbn import zxcvbn

from mfaplane_eventing.aggregate import Refusal, Rejected

MIN_SCORE = 2
ESTIMATED_LENGTH = 64
PRODUCT_WORDS = ("mfaplane", "mfa", "admin")


async def refuse_guessable(password: str, *context: str) -> None:
    """Refuses `password` if it is easy to guess, also from `context` (the principal's email, name)."""
    prefix = password[:ESTIMATED_LENGTH]
    estimate = await asyncio.to_thread(zxcvbn, prefix, [*context, *PRODUCT_WORDS], ESTIMATED_LENGTH)
    if estimate["score"] < MIN_SCORE:
        why = estimate["feedback"]["warning"] or "It is too easy to guess."
        raise Rejected("password_too_guessable", f"Choose another password: {why} A few unrelated words make a "
                       "good one.", Refusal.INVALID)
