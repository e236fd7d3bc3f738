"""Kafka security settings: validation by name, masking, and the keywords every client gets."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, UnsupportedSaslMechanismError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import ConfigError
from streamer.kafka.client import _security_failure, client_kwargs, faust_credentials, ssl_context
from streamer.settings.model import load_settings
from tests.test_config import run_streamer

SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "svc-streamer",
        "KAFKA_SASL_PASSWORD": "hunter2-secret"}


class TestDefaults:
    """Without Kafka variables: plain TCP, PLAIN mechanism, replication factor 1."""

    def test_contract_defaults(self) -> None:
        """The contract's defaults, and no SASL or TLS keywords for the clients."""
        s = load_settings({})
        assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", "PLAIN")
        assert s.kafka_sasl_username == "" and s.kafka_sasl_password.get_secret_value() == ""
        assert (s.kafka_ssl_cafile, s.kafka_ssl_certfile, s.kafka_ssl_keyfile) == ("", "", "")
        assert s.kafka_replication_factor == 1
        assert client_kwargs(s) == {"security_protocol": "PLAINTEXT"}
        assert faust_credentials(s) is None and ssl_context(s) is None

    def test_names_are_case_insensitive(self) -> None:
        """Lower-case values are accepted and normalised."""
        s = load_settings({"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
                           "KAFKA_SASL_MECHANISM": "scram-sha-512",
                           "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})
        assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == (
            "SASL_PLAINTEXT", "SCRAM-SHA-512")


class TestRejected:
    """Every invalid value or combination raises ConfigError naming one variable."""

    @pytest.mark.parametrize(("env", "variable"), [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({**SASL, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SSL_CAFILE": "/does/not/exist.pem", "KAFKA_SECURITY_PROTOCOL": "SSL"},
         "KAFKA_SSL_CAFILE"),
        ({"KAFKA_REPLICATION_FACTOR": "0"}, "KAFKA_REPLICATION_FACTOR"),
        ({"KAFKA_REPLICATION_FACTOR": "2.5"}, "KAFKA_REPLICATION_FACTOR"),
    ])
    def test_values(self, env: dict[str, str], variable: str) -> None:
        """A bad value or a missing partner is reported by the variable's name."""
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert info.value.variable == variable
        assert "hunter2" not in str(info.value)

    @pytest.mark.parametrize(("files", "protocol", "variable"), [
        (("ca",), "PLAINTEXT", "KAFKA_SSL_CAFILE"),
        (("cert", "key"), "SASL_PLAINTEXT", "KAFKA_SSL_CERTFILE"),
        (("cert",), "SSL", "KAFKA_SSL_KEYFILE"),
        (("key",), "SSL", "KAFKA_SSL_CERTFILE"),
    ])
    def test_file_combinations(self, pem: dict[str, str], files: tuple[str, ...], protocol: str,
                               variable: str) -> None:
        """TLS files need a TLS protocol; certificate and key come together."""
        env = {"KAFKA_SECURITY_PROTOCOL": protocol}
        if protocol.startswith("SASL"):
            env.update(KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p")
        names = {"ca": "KAFKA_SSL_CAFILE", "cert": "KAFKA_SSL_CERTFILE", "key": "KAFKA_SSL_KEYFILE"}
        env.update({names[f]: pem[f] for f in files})
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert info.value.variable == variable

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A PEM file the process cannot read is named."""
        path = tmp_path / "ca.pem"
        path.write_text("x")
        path.chmod(0)
        with pytest.raises(ConfigError) as info:
            load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(path)})
        assert info.value.variable == "KAFKA_SSL_CAFILE"

    def test_a_directory_is_not_a_file(self, tmp_path: Path) -> None:
        """A directory where a PEM file belongs is named."""
        with pytest.raises(ConfigError) as info:
            load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path)})
        assert info.value.variable == "KAFKA_SSL_CAFILE"

    @pytest.mark.parametrize(("name", "variable"), [
        ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CAFILE"), ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_CERTFILE"),
    ])
    def test_files_that_are_not_pem(self, pem: dict[str, str], name: str, variable: str) -> None:
        """Readable but not PEM: building the TLS context names the file's variable."""
        env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": pem["cert"],
               "KAFKA_SSL_KEYFILE": pem["key"], name: pem["junk"]}
        with pytest.raises(ConfigError) as info:
            ssl_context(load_settings(env))
        assert info.value.variable == variable


class TestSecret:
    """The SASL password never shows: not in reprs, masked output, or check-config."""

    def test_repr_and_masked(self) -> None:
        """repr(), str() and masked() hide it; the clients still get the real value."""
        s = load_settings(SASL)
        for shown in (repr(s), str(s), repr(s.masked()), repr(faust_credentials(s))):
            assert "hunter2" not in shown
        assert s.masked()["KAFKA_SASL_PASSWORD"] != "hunter2-secret"
        assert client_kwargs(s)["sasl_plain_password"] == "hunter2-secret"

    def test_check_config_masks_it(self) -> None:
        """check-config exits 0, lists the Kafka variables, never prints the password."""
        proc = run_streamer(["check-config"], **SASL)
        assert proc.returncode == 0, proc.stderr
        assert "hunter2" not in proc.stdout + proc.stderr
        for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_PASSWORD", "KAFKA_REPLICATION_FACTOR"):
            assert name in proc.stdout

    def test_bad_combination_exits_2_with_one_line(self) -> None:
        """As a process: exit 2, one stderr line naming the variable, no traceback."""
        proc = run_streamer(["worker"], KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                            KAFKA_SASL_USERNAME="u")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [proc.stderr.strip()]
        assert "KAFKA_SASL_PASSWORD" in proc.stderr and "Traceback" not in proc.stderr


class TestClientKeywords:
    """aiokafka keywords and Faust credentials say the same thing for each protocol."""

    @pytest.mark.parametrize(("protocol", "mechanism"), [
        ("SSL", "PLAIN"), ("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "PLAIN"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
    ])
    def test_faust_gets_what_aiokafka_gets(self, pem: dict[str, str], protocol: str,
                                           mechanism: str) -> None:
        """Faust's own mapping of our credentials equals client_kwargs, key by key."""
        env = {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism}
        if protocol.startswith("SASL"):
            env.update(KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD="pw")
        if protocol.endswith("SSL"):
            env.update(KAFKA_SSL_CAFILE=pem["ca"], KAFKA_SSL_CERTFILE=pem["cert"],
                       KAFKA_SSL_KEYFILE=pem["key"])
        s = load_settings(env)
        ours = client_kwargs(s)
        faust_side = dict(credentials_to_aiokafka_auth(faust_credentials(s)))
        assert ours["security_protocol"] == faust_side["security_protocol"] == protocol
        assert isinstance(ours.get("ssl_context"), ssl.SSLContext) == protocol.endswith("SSL")
        assert (faust_side.get("ssl_context") is not None) == protocol.endswith("SSL")
        if protocol.startswith("SASL"):
            for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
                assert ours[key] == faust_side[key]
            assert ours["sasl_mechanism"] == mechanism
        else:
            assert "sasl_mechanism" not in ours

    def test_tls_context_verifies_the_broker(self, pem: dict[str, str]) -> None:
        """The context checks the certificate and the host name (no silent trust-all)."""
        context = ssl_context(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL",
                                             "KAFKA_SSL_CAFILE": pem["ca"]}))
        assert context is not None
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# ---- every combination against an independent statement of the rules --------------------

PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
FILE_VARS = ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"]


def expected_problem(env: dict[str, str]) -> set[str]:
    """The variables a rejection may name (empty: the settings are valid), from the docs' rules."""
    proto = env["KAFKA_SECURITY_PROTOCOL"]
    sasl, tls = proto.startswith("SASL_"), proto.endswith("SSL")
    bad = set()
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        if bool(env.get(name)) != sasl:
            bad.add(name)
    for name in FILE_VARS:
        if env.get(name) and not tls:
            bad.add(name)
    if bool(env.get("KAFKA_SSL_CERTFILE")) != bool(env.get("KAFKA_SSL_KEYFILE")):
        bad.add("KAFKA_SSL_KEYFILE" if env.get("KAFKA_SSL_CERTFILE") else "KAFKA_SSL_CERTFILE")
    return bad


@given(proto=st.sampled_from(PROTOCOLS), user=st.booleans(), password=st.booleans(),
       files=st.sets(st.sampled_from(FILE_VARS)))
@settings(max_examples=200, deadline=None)
def test_every_combination_matches_the_rules(
    pem: dict[str, str], proto: str, user: bool, password: bool, files: set[str]
) -> None:
    """Valid exactly when the rules allow it; otherwise the error names a broken rule's variable."""
    paths = {"KAFKA_SSL_CAFILE": pem["ca"], "KAFKA_SSL_CERTFILE": pem["cert"],
             "KAFKA_SSL_KEYFILE": pem["key"]}
    env = {"KAFKA_SECURITY_PROTOCOL": proto, **{f: paths[f] for f in files}}
    if user:
        env["KAFKA_SASL_USERNAME"] = "svc"
    if password:
        env["KAFKA_SASL_PASSWORD"] = "hunter2-secret"
    bad = expected_problem(env)
    try:
        s = load_settings(env)
    except ConfigError as exc:
        assert exc.variable in bad, (env, exc)
        assert "hunter2" not in str(exc)
        return
    assert not bad, env
    kwargs = client_kwargs(s)
    assert kwargs["security_protocol"] == proto
    assert ("ssl_context" in kwargs) == proto.endswith("SSL")
    assert ("sasl_plain_password" in kwargs) == proto.startswith("SASL_")


class TestFailureClassification:
    """Which connection errors end a start (TLS, auth) and which are retried."""

    @pytest.mark.parametrize(("exc", "sasl", "fatal"), [
        (ConnectionRefusedError(111, "refused"), True, False),
        (TimeoutError(), True, False),
        (KafkaConnectionError("closed"), True, False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False, True),
        (ssl.SSLError(1, "TLSV13_ALERT_CERTIFICATE_REQUIRED"), False, True),
        (UnsupportedSaslMechanismError(), True, True),
        (UnsupportedSaslMechanismError(), False, False),  # no SASL configured: not ours to judge
        (KeyError("v"), True, True),
        (RuntimeError("odd"), False, False),
    ])
    def test_table(self, exc: BaseException, sasl: bool, fatal: bool) -> None:
        """Refusals are final and say what to check; anything transient is retried."""
        reason = _security_failure(exc, sasl)
        assert (reason is not None) == fatal
        if reason is not None:
            assert "check KAFKA_" in reason
