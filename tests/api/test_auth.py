"""Bearer tokens: what is accepted, and that everything else is refused with a clear reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from voicetrace.service.api.auth import AuthError, mint_token, verify_token

SECRET = "auth-test-secret-0123456789abcdef0123456789"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_to_its_user() -> None:
    assert verify_token(mint_token("alice", SECRET), SECRET) == "alice"


def test_token_carries_sub_iat_and_exp_from_the_given_clock() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    token = mint_token("bob", SECRET, ttl_s=120, now=now)
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims == {"sub": "bob", "iat": int(now.timestamp()), "exp": int(now.timestamp()) + 120}


def test_an_expired_token_is_refused() -> None:
    token = mint_token("alice", SECRET, ttl_s=60, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(AuthError, match="expired"):
        verify_token(token, SECRET)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = mint_token("alice", "another-secret-0123456789abcdef0123456789")
    with pytest.raises(AuthError, match="signature"):
        verify_token(token, SECRET)


def test_a_tampered_subject_is_refused() -> None:
    header, _payload, signature = mint_token("alice", SECRET).split(".")
    now = int(datetime.now(UTC).timestamp())
    forged = ".".join([header, _b64({"sub": "mallory", "iat": now, "exp": now + 60}), signature])
    with pytest.raises(AuthError, match="signature"):
        verify_token(forged, SECRET)


def test_an_unsigned_alg_none_token_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "a", "iat": now, "exp": now + 60}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(AuthError):
        verify_token(token, SECRET)


def test_another_hmac_algorithm_is_refused() -> None:
    now = datetime.now(UTC)
    claims = {"sub": "alice", "iat": now, "exp": now + timedelta(minutes=1)}
    long_secret = SECRET * 2  # long enough for HS512, so only the algorithm is wrong
    token = jwt.encode(claims, long_secret, algorithm="HS512")
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(token, long_secret)


@pytest.mark.parametrize("missing", ["sub", "exp", "iat"])
def test_a_token_without_a_required_claim_is_refused(missing: str) -> None:
    now = datetime.now(UTC)
    claims = {"sub": "alice", "iat": now, "exp": now + timedelta(minutes=1)}
    del claims[missing]
    with pytest.raises(AuthError, match=f"'{missing}'"):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


@pytest.mark.parametrize("subject", ["", "   "])
def test_a_blank_subject_is_refused(subject: str) -> None:
    now = datetime.now(UTC)
    claims = {"sub": subject, "iat": now, "exp": now + timedelta(minutes=1)}
    with pytest.raises(AuthError, match="subject"):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "Bearer x"])
def test_garbage_is_refused_without_echoing_it(garbage: str) -> None:
    with pytest.raises(AuthError) as info:
        verify_token(garbage, SECRET)
    assert (garbage not in info.value.message) or not garbage


def test_refusals_never_contain_the_token_or_the_secret() -> None:
    token = mint_token("alice", "another-secret-0123456789abcdef0123456789")
    with pytest.raises(AuthError) as info:
        verify_token(token, SECRET)
    assert token not in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("user", "secret", "ttl"),
    [
        ("", SECRET, 60),
        ("  ", SECRET, 60),
        ("x" * 256, SECRET, 60),
        ("a", "", 60),
        ("a", SECRET, 0),
    ],
)
def test_minting_rejects_bad_input(user: str, secret: str, ttl: int) -> None:
    with pytest.raises(ValueError):
        mint_token(user, secret, ttl_s=ttl)


def test_minting_rejects_a_naive_clock() -> None:
    with pytest.raises(ValueError, match="timezone"):
        mint_token("alice", SECRET, now=datetime(2030, 1, 1))
