"""Whether a provider record on ``llm.providers`` may be applied: the rules that keep our keys ours. Pure.

Anyone who can produce to ``llm.providers`` can offer a provider; these rules
decide what such a record may do, whatever its signature says (signing,
:mod:`.signing`, only says who wrote it):

* it may not replace or remove a provider defined in the settings file (the
  built-in sections, ``providers:``, ``local``), nor take the name ``premium``;
* its key variable (``api_key_env``, or the kind's usual one when that is
  null) must be one of ``registry.registered_key_envs`` (empty by default: a
  registered provider gets no key), and is never an ``LLMROUTER_*`` variable
  (the admin key, the secrets file, the registry's signing key) nor the
  variable of the signing key, whatever the settings list;
* when it takes a key, its endpoint (the vendor's API when none is given) and
  its ``health_check_url`` must match ``registry.registered_endpoints``
  (:mod:`llmrouter.core.endpoints` says exactly how a URL matches, and how
  internal addresses match only when named literally);
* no registration, keyed or not, may point at a link-local address
  (169.254.169.254 is the cloud metadata service) unless the allow-list
  names it literally;
* a premium-kind provider needs prices above 0 (the premium budget caps it by
  its cost, :func:`llmrouter.providers.spec.premium_price_problem`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmrouter.core.endpoints import EndpointPrefix, allowed, host_of, is_link_local_host
from llmrouter.errors import ConfigError
from llmrouter.providers.spec import ProviderSpec, premium_price_problem

RESERVED_PREFIX = "LLMROUTER_"  # our own variables: never a provider's key


@dataclass(frozen=True)
class AdmissionRules:
    """What the settings allow a registered provider; built once from the settings."""

    settings_providers: frozenset[str]  # names defined in the settings file (and "premium")
    key_envs: frozenset[str] = frozenset()  # variables a registered provider may take its key from
    endpoints: tuple[EndpointPrefix, ...] = ()  # where a registered provider with a key may be
    signing_key_env: str | None = None  # the registry's own key: never a provider's

    @classmethod
    def build(cls, *, settings_providers: Iterable[str], key_envs: Iterable[str] = (),
              endpoints: Iterable[str] = (), signing_key_env: str | None = None) -> AdmissionRules:
        return cls(frozenset(settings_providers), frozenset(key_envs),
                   tuple(EndpointPrefix.parse(url) for url in endpoints), signing_key_env)

    def forbidden_key_env(self, name: str) -> bool:
        """Our own variables, which no registered provider may send anywhere, whatever the settings list."""
        return name.upper().startswith(RESERVED_PREFIX) or name == self.signing_key_env


def removal_problem(name: str, rules: AdmissionRules) -> str | None:
    """Why a null value (a deregistration) for ``name`` is refused, or None."""
    if name in rules.settings_providers:
        return f"{name!r} is defined in the settings file; a record on the topic cannot remove it"
    return None


def admission_problems(spec: ProviderSpec, rules: AdmissionRules) -> list[str]:
    """Every reason the registration ``spec`` (already a valid ProviderConfig) is refused; [] to apply it."""
    problems: list[str] = []
    if spec.name in rules.settings_providers:
        problems.append(f"{spec.name!r} is defined in the settings file; a record on the topic cannot replace it")
    price = premium_price_problem(spec.kind, spec.price_input_per_1k_usd, spec.price_output_per_1k_usd)
    if price:
        problems.append(price)
    urls = [("endpoint", spec.base_url)] + ([("health_check_url", spec.health_check_url)]
                                            if spec.health_check_url else [])
    key_env = spec.key_env
    if key_env is not None:
        problems += _key_problems(key_env, rules)
        for field, url in urls:
            if not allowed(url, rules.endpoints):
                problems.append(f"{field} {url!r} is not in registry.registered_endpoints, and a provider with a "
                                f"key ({key_env}) may only be at an endpoint listed there")
    for field, url in urls:
        host = host_of(url)
        if host is not None and is_link_local_host(host) and not allowed(url, rules.endpoints):
            problems.append(f"{field} {url!r} is a link-local address (the cloud metadata service lives there); "
                            f"refused unless registry.registered_endpoints names it")
    return problems


def check_admission(spec: ProviderSpec, rules: AdmissionRules) -> None:
    """Raise :class:`ConfigError` naming every reason ``spec`` may not be registered."""
    problems = admission_problems(spec, rules)
    if problems:
        raise ConfigError(f"provider config {spec.name!r} refused: " + "; ".join(problems))


def _key_problems(key_env: str, rules: AdmissionRules) -> list[str]:
    if rules.forbidden_key_env(key_env):
        return [f"api_key_env {key_env} is one of llm-router's own variables, never a provider's key"]
    if key_env not in rules.key_envs:
        allowed_names = ", ".join(sorted(rules.key_envs)) or "none: registered providers get no key"
        return [f"api_key_env {key_env} is not in registry.registered_key_envs ({allowed_names}); "
                f"set api_key_env to '' for a provider that needs no key"]
    return []
