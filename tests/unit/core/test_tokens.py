"""Node tokens: every attack in the design refused, with the exact reason."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from facegrid import tokens
from facegrid.tokens import TokenError, TokenReason

pytestmark = [pytest.mark.unit, pytest.mark.reliability]  # every token attack


def b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


@pytest.fixture
def verifier(signing_key):
    revoked: set[str] = set()
    v = tokens.TokenVerifier(signing_key.public_key(), leeway=0, is_revoked=revoked.__contains__)
    v.revoked = revoked
    return v


def refuse(verifier, token, reason, node_id="cam-01"):
    with pytest.raises(TokenError) as err:
        verifier.verify(token, node_id=node_id)
    assert err.value.reason is reason, err.value
    return err.value


def test_valid_token(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-01", ttl_seconds=60)
    c = verifier.verify(tok, node_id="cam-01")
    assert c.node_id == "cam-01" and c.audience == "facegrid"
    assert c.expires_at - c.issued_at == 60
    assert set(c.raw) >= {"sub", "node_id", "aud", "iat", "exp", "jti"}
    assert jwt.get_unverified_header(tok)["alg"] == "EdDSA"


def test_another_key(verifier):
    other = tokens.generate_private_key()
    refuse(verifier, tokens.issue_token(other, "cam-01"), TokenReason.BAD_SIGNATURE)


def test_alg_none(verifier):
    now = int(time.time())
    claims = {"sub": "cam-01", "node_id": "cam-01", "aud": "facegrid", "iat": now,
              "exp": now + 60, "jti": "x"}
    tok = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    refuse(verifier, tok, TokenReason.ALG_NOT_ALLOWED)  # the classic unsigned token
    tok = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.c2ln"
    refuse(verifier, tok, TokenReason.ALG_NOT_ALLOWED)


def test_hs256_with_public_key_as_secret(verifier, signing_key):
    now = int(time.time())
    claims = {"sub": "cam-01", "node_id": "cam-01", "aud": "facegrid", "iat": now,
              "exp": now + 60, "jti": "x"}
    secret = tokens.public_pem(signing_key)
    header = b64({"alg": "HS256", "typ": "JWT"})
    import hashlib
    import hmac
    signing_input = f"{header}.{b64(claims)}".encode()
    sig = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest())
    tok = f"{signing_input.decode()}.{sig.rstrip(b'=').decode()}"
    refuse(verifier, tok, TokenReason.ALG_NOT_ALLOWED)


def test_expired(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-01", ttl_seconds=10, now=time.time() - 100)
    refuse(verifier, tok, TokenReason.EXPIRED)


def test_not_yet_valid(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-01", now=time.time() + 3600)
    refuse(verifier, tok, TokenReason.NOT_YET_VALID)


def test_wrong_audience(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-01", audience="someone-else")
    refuse(verifier, tok, TokenReason.WRONG_AUDIENCE)


def test_another_nodes_token(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-02")
    refuse(verifier, tok, TokenReason.WRONG_NODE, node_id="cam-01")


def test_revoked(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-01", jti="deadbeef")
    verifier.verify(tok, node_id="cam-01")  # cached as valid...
    verifier.revoked.add("deadbeef")
    refuse(verifier, tok, TokenReason.REVOKED)  # ...but revocation is checked every time


def test_tampered_payload(verifier, signing_key):
    tok = tokens.issue_token(signing_key, "cam-02")
    h, p, s = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(sub="cam-01", node_id="cam-01")
    refuse(verifier, f"{h}.{b64(claims)}.{s}", TokenReason.BAD_SIGNATURE)


@pytest.mark.parametrize("tok", ["", "abc", "a.b", "a.b.c.d", "!!.??.**", "x" * 5000])
def test_malformed(verifier, tok):
    refuse(verifier, tok, TokenReason.MALFORMED)


def test_missing_claim(verifier, signing_key):
    tok = jwt.encode({"sub": "cam-01", "aud": "facegrid", "exp": int(time.time()) + 60},
                     signing_key, algorithm="EdDSA")
    refuse(verifier, tok, TokenReason.MISSING_CLAIM)


def test_expiry_checked_on_cached_tokens(signing_key):
    now = [time.time()]
    v = tokens.TokenVerifier(signing_key.public_key(), leeway=0, clock=lambda: now[0])
    tok = tokens.issue_token(signing_key, "cam-01", ttl_seconds=60, now=now[0])
    v.verify(tok, "cam-01")
    now[0] += 61
    with pytest.raises(TokenError) as err:
        v.verify(tok, "cam-01")
    assert err.value.reason is TokenReason.EXPIRED


def test_keypair_files(tmp_path):
    priv, pub = tokens.write_keypair(tmp_path)
    assert (priv.stat().st_mode & 0o777) == 0o600
    key = tokens.load_private_key(priv)
    assert tokens.public_pem(key) == pub.read_bytes()
    with pytest.raises(FileExistsError):
        tokens.write_keypair(tmp_path)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400),
                                               ("7d", 604800), ("120", 120)])
def test_parse_ttl(text, seconds):
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "-5m", "5w"])
def test_parse_ttl_refuses(text):
    with pytest.raises(ValueError):
        tokens.parse_ttl(text)
