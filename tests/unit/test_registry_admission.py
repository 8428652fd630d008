"""What a record on llm.providers may do (issue 19, item 1): the pure rules of
core/endpoints.py, registry/admission.py and registry/signing.py, and the
registry applying them. No broker: records are handed to ``apply`` as the topic
reader hands them (key, value, offset, headers).
"""

from __future__ import annotations

import json

import pytest

from llmrouter.core.endpoints import EndpointPrefix, allowed, is_internal_host
from llmrouter.providers.spec import ProviderSpec
from llmrouter.registry.admission import AdmissionRules, admission_problems, removal_problem
from llmrouter.registry.signing import SIGNATURE_HEADER, sign, signature_problem
from tests.unit.registry_harness import registry_for, start, stop

SECRET = "a-registry-key-of-some-length"
RULES = AdmissionRules.build(settings_providers={"local", "huggingface", "together", "openai", "anthropic",
                                                 "premium"},
                             key_envs={"PROXY_KEY"}, endpoints=["https://proxy.example.com/v1", "https://*.corp.net",
                                                                "http://10.1.2.3:8000/v1"],
                             signing_key_env="LLMROUTER_REGISTRY_KEY")


def spec(**fields) -> ProviderSpec:
    base = {"name": "gpt-proxy", "kind": "openai_compatible", "endpoint": "https://proxy.example.com/v1",
            "api_key_env": "PROXY_KEY", "models": ("m",)}
    return ProviderSpec(**{**base, **fields})


# ---- the endpoint allow-list ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, ok", [
    ("https://proxy.example.com/v1", True),
    ("https://proxy.example.com/v1/chat/completions", True),
    ("https://PROXY.example.com./v1", True),  # case and a trailing dot do not make another host
    ("https://proxy.example.com:443/v1", True),
    ("https://proxy.example.com/v10", False),  # a path prefix ends at a segment boundary
    ("https://proxy.example.com/", False),
    ("http://proxy.example.com/v1", False),  # another scheme
    ("https://proxy.example.com:8443/v1", False),  # another port
    ("https://proxy.example.com.evil.io/v1", False),
    ("https://proxy.example.com@evil.io/v1", False),  # user info: the host is evil.io
    ("https://a.corp.net/x", True), ("https://a.b.corp.net", True),
    ("https://corp.net", False),  # *.domain is the subdomains, not the domain
    ("https://evilcorp.net", False),
    ("http://10.1.2.3:8000/v1", True),  # an internal address named literally
    ("http://10.1.2.3:8001/v1", False),
    ("not a url", False), ("ftp://proxy.example.com/v1", False),
])
def test_a_url_matches_the_allow_list_by_scheme_host_port_and_path_prefix(url, ok):
    """Each rule of core/endpoints.py's docstring, one URL at a time."""
    assert allowed(url, RULES.endpoints) is ok


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "localhost",
                                  "api.localhost", "10.0.0.5", "192.168.1.1", "172.16.0.1", "169.254.169.254",
                                  "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1"])
def test_internal_hosts_are_known_in_every_spelling(host):
    """Loopback, private, link-local, shared and unspecified addresses, however the resolver would read them."""
    assert is_internal_host(EndpointPrefix.parse(f"http://{host if ':' not in host else f'[{host}]'}/").host)


def test_a_wildcard_never_lets_an_internal_address_in():
    """*.corp.net cannot be met by an address: internal hosts pass only when named literally."""
    rules = AdmissionRules.build(settings_providers=(), key_envs={"PROXY_KEY"}, endpoints=["https://*.1"])
    assert not allowed("https://127.0.0.1/", rules.endpoints)


@pytest.mark.parametrize("entry", ["proxy.example.com", "https://*evil.com", "https://a.*.com", "https://x@y/"])
def test_a_malformed_allow_list_entry_is_refused(entry):
    with pytest.raises(ValueError):
        EndpointPrefix.parse(entry)


# ---- the admission rules ----------------------------------------------------------------------------------------

def test_an_allowed_keyed_registration_passes():
    """A listed key variable, at a listed endpoint, with a listed health URL."""
    assert admission_problems(spec(health_check_url="https://proxy.example.com/v1/models"), RULES) == []


@pytest.mark.parametrize("fields, reason", [
    ({"name": "openai", "kind": "openai", "endpoint": "https://proxy.example.com/v1", "price_input_per_1k_usd": 1,
      "price_output_per_1k_usd": 1}, "defined in the settings file"),
    ({"api_key_env": "LLMROUTER_ADMIN_KEY"}, "llm-router's own variables"),
    ({"api_key_env": "llmrouter_admin_key"}, "llm-router's own variables"),
    ({"api_key_env": "OPENAI_API_KEY"}, "not in registry.registered_key_envs"),
    ({"kind": "openai", "endpoint": None, "api_key_env": None, "price_input_per_1k_usd": 1,
      "price_output_per_1k_usd": 1}, "api_key_env OPENAI_API_KEY is not in"),  # the kind's usual key counts
    ({"endpoint": "http://127.0.0.1:9999/v1"}, "endpoint 'http://127.0.0.1:9999/v1' is not in"),
    ({"health_check_url": "http://169.254.169.254/latest/meta-data/"}, "health_check_url"),
    ({"endpoint": "https://proxy.example.com.evil.io/v1"}, "is not in registry.registered_endpoints"),
    ({"kind": "openai", "price_input_per_1k_usd": 0.0, "price_output_per_1k_usd": 0.0}, "above 0"),
    ({"kind": "anthropic", "price_input_per_1k_usd": 0.8, "price_output_per_1k_usd": 0.0}, "above 0"),
])
def test_a_registration_the_settings_do_not_allow_is_refused_with_its_reason(fields, reason):
    """A settings name, our own variables, an unlisted key, an unlisted endpoint or health URL, a $0 premium kind."""
    problems = admission_problems(spec(**fields), RULES)
    assert any(reason in p for p in problems), problems


def test_the_signing_key_variable_is_never_a_provider_key_even_unprefixed():
    rules = AdmissionRules.build(settings_providers=(), key_envs={"REG_KEY"}, endpoints=["https://proxy.example.com"],
                                 signing_key_env="REG_KEY")
    assert any("own variables" in p for p in admission_problems(spec(api_key_env="REG_KEY"), rules))


def test_a_keyless_registration_may_be_on_the_local_network_but_never_link_local():
    """No key travels, so a vLLM on the LAN is fine; the metadata address is refused all the same."""
    assert admission_problems(spec(api_key_env="", endpoint="http://10.9.9.9:8000/v1"), RULES) == []
    problems = admission_problems(spec(api_key_env="", endpoint="http://169.254.169.254/v1"), RULES)
    assert problems and "link-local" in problems[0]


def test_a_settings_provider_cannot_be_removed_from_the_topic():
    assert "cannot remove" in removal_problem("together", RULES)
    assert removal_problem("gpt-proxy", RULES) is None


# ---- signatures -------------------------------------------------------------------------------------------------

def test_a_signature_binds_key_and_value_and_a_tombstone_is_signed_too():
    value = b'{"name": "gpt-proxy"}'
    header = [(SIGNATURE_HEADER, sign(SECRET, b"gpt-proxy", value))]
    assert signature_problem(SECRET, b"gpt-proxy", value, header) is None
    assert "bad signature" in signature_problem(SECRET, b"gpt-proxy", value + b" ", header)
    assert "bad signature" in signature_problem(SECRET, b"other", value, header)  # not replayable under a new name
    assert "bad signature" in signature_problem("another-key-of-some-length", b"gpt-proxy", value, header)
    assert "bad signature" in signature_problem(SECRET, b"gpt-proxy", None, header)  # a value's signature
    assert signature_problem(SECRET, b"gpt-proxy", None, [(SIGNATURE_HEADER, sign(SECRET, b"gpt-proxy", None))]) is None
    assert "unsigned" in signature_problem(SECRET, b"gpt-proxy", value, [])
    assert "more than one" in signature_problem(SECRET, b"gpt-proxy", value, header * 2)
    assert "no registry key" in signature_problem(None, b"gpt-proxy", value, header)  # fails closed


# ---- the registry applying them ---------------------------------------------------------------------------------

@pytest.fixture
async def registry():
    registry = registry_for({"LLMROUTER__REGISTRY__REGISTERED_KEY_ENVS": "[PROXY_KEY]",
                             "LLMROUTER__REGISTRY__REGISTERED_ENDPOINTS": "['https://proxy.example.com/v1']"},
                            {"OPENAI_API_KEY": "sk-ours", "LLMROUTER_ADMIN_KEY": "admin-ours", "PROXY_KEY": "pk"})
    await start(registry)
    yield registry
    await stop(registry)



async def test_an_allowed_registration_is_applied_and_clears_an_earlier_refusal(registry):
    name, record = "elsewhere", {"name": "elsewhere", "kind": "openai_compatible", "endpoint": "http://127.0.0.1:8/v1",
                                 "api_key_env": "PROXY_KEY", "models": ["m"]}
    await registry.apply(name.encode(), json.dumps(record).encode(), 1)
    assert "elsewhere" not in registry.names() and registry.rejected_records()[0]["name"] == "elsewhere"
    fixed = {**record, "endpoint": "https://proxy.example.com/v1"}
    await registry.apply(name.encode(), json.dumps(fixed).encode(), 2)
    assert registry.status()["elsewhere"] == {"available": True} and registry.rejected_records() == []


async def test_with_a_registry_key_only_records_signed_with_it_are_applied():
    """Signing on: unsigned and badly signed records are refused, a signed one and its signed removal apply."""
    registry = registry_for({"LLMROUTER__REGISTRY__SIGNING_KEY_ENV": "LLMROUTER_REGISTRY_KEY"},
                            {"LLMROUTER_REGISTRY_KEY": SECRET})
    await start(registry)
    try:
        value = json.dumps({"name": "vllm", "kind": "openai_compatible", "endpoint": "http://10.0.0.9:8000/v1",
                            "api_key_env": "", "models": ["m"]}).encode()
        await registry.apply(b"vllm", value, 1)
        await registry.apply(b"vllm", value, 2, ((SIGNATURE_HEADER, b"v1=" + b"0" * 64),))
        assert "vllm" not in registry.names()
        assert [r["reason"].split(":")[0] for r in registry.rejected_records()] == ["bad signature"]
        await registry.apply(b"vllm", value, 3, ((SIGNATURE_HEADER, sign(SECRET, b"vllm", value)),))
        assert "vllm" in registry.names() and registry.rejected_records() == []
        await registry.apply(b"vllm", None, 4)  # an unsigned removal is refused ...
        assert "vllm" in registry.names()
        await registry.apply(b"vllm", None, 5, ((SIGNATURE_HEADER, sign(SECRET, b"vllm", None)),))
        assert "vllm" not in registry.names()  # ... a signed one applies
    finally:
        await stop(registry)


async def test_with_signing_on_and_no_key_in_the_environment_every_record_is_refused():
    registry = registry_for({"LLMROUTER__REGISTRY__SIGNING_KEY_ENV": "LLMROUTER_REGISTRY_KEY"}, {})
    await start(registry)
    try:
        value = json.dumps({"name": "vllm", "kind": "openai_compatible", "endpoint": "http://10.0.0.9:8000/v1",
                            "api_key_env": "", "models": ["m"]}).encode()
        await registry.apply(b"vllm", value, 1, ((SIGNATURE_HEADER, sign(SECRET, b"vllm", value)),))
        assert "vllm" not in registry.names()
        assert "no registry key" in registry.rejected_records()[0]["reason"]
    finally:
        await stop(registry)
