"""RecordApplicationSignIn: given an enrollment's events, when the gateway records how a sign-in to an SSO
application ended, then one ApplicationSignInDecided, whatever the enrollment says (it only records)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from mfaplane_contracts.commands import RecordApplicationSignIn
from mfaplane_contracts.mfa_events import ApplicationSignInDecided

WIKI = uuid.UUID("5f0c1c9e-0000-4000-8000-0000000000c1")
SIGNED_IN = {"system_id": WIKI, "protocol": "oidc", "outcome": "signed_in", "reason": "code_verified",
             "mfa_used": True, "source": "192.0.2.7"}
REFUSED = {"system_id": WIKI, "protocol": "saml", "outcome": "refused", "reason": "locked_out", "mfa_used": False,
           "source": None}


def test_a_sign_in_with_a_code_is_recorded_on_a_set_up_users_history(mfa):
    mfa.given(*mfa.set_up()).when(mfa.cmd(RecordApplicationSignIn, **SIGNED_IN), now=mfa.t0 + timedelta(days=1)) \
        .then(mfa.ev(ApplicationSignInDecided, **SIGNED_IN))


def test_a_refusal_is_recorded_for_a_user_with_no_enrollment(mfa):
    mfa.given().when(mfa.cmd(RecordApplicationSignIn, **REFUSED), now=mfa.t0).then(mfa.ev(ApplicationSignInDecided,
                                                                                        **REFUSED))
