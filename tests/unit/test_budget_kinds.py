"""Budgets follow what a provider is, not what it is called (issue 19, item 2), and the
budget's estimate is never below a prompt's real token count (item 9).
"""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llmrouter.dispatch.budgets import Budget, Ledger
from llmrouter.localmodel.tiny_tokenizer import build_tiny_tokenizer
from llmrouter.providers.base import estimate_tokens
from llmrouter.providers.cloud import build_cloud_provider
from llmrouter.providers.spec import PREMIUM_KINDS, ProviderSpec

PREMIUM = Budget.parse("premium", "$10/month", PREMIUM_KINDS, emergency_only=True)
SPECS = {
    "gpt-proxy": ProviderSpec(name="gpt-proxy", kind="openai", models=("m",), price_input_per_1k_usd=1,
                              price_output_per_1k_usd=1),
    "claude-eu": ProviderSpec(name="claude-eu", kind="anthropic", models=("m",), price_input_per_1k_usd=1,
                              price_output_per_1k_usd=1),
    "last-resort": ProviderSpec(name="last-resort", kind="openai_compatible", endpoint="http://x/v1", models=("m",),
                                emergency_only=True),
    "together": ProviderSpec(name="together", kind="together", models=("m",)),
    "openai": ProviderSpec(name="openai", kind="openai_compatible", endpoint="http://x/v1", models=("m",)),
}


def ledger(specs: dict[str, ProviderSpec]) -> Ledger:
    return Ledger(None, [PREMIUM], spec_of=specs.get, partitions=4, write_attempts=1, now_ms=lambda: 0)


@pytest.mark.parametrize("name, covered", [("gpt-proxy", True), ("claude-eu", True), ("last-resort", True),
                                           ("together", False), ("openai", False), ("unknown", False)])
def test_the_premium_budget_covers_premium_kinds_and_emergency_providers_whatever_their_name(name, covered):
    """An openai- or anthropic-kind provider under another name is capped; a name alone caps nothing."""
    assert (ledger(SPECS).budget_of(name) is PREMIUM) is covered


def test_a_provider_removed_during_its_call_is_still_settled_against_its_budget():
    """The reservation made while it was registered must be settled against the same budget."""
    specs = dict(SPECS)
    books = ledger(specs)
    assert books.budget_of("gpt-proxy") is PREMIUM
    del specs["gpt-proxy"]
    assert books.budget_of("gpt-proxy") is PREMIUM


# ---- the estimate -----------------------------------------------------------------------------------------------

CJK = ["请用三句话解释一下路由器如何选择提供商。", "東京の明日の天気を教えてください。", "한국어로 짧게 대답해 주세요.",
       "鬱蒐龘齉爨驫灪籲", "「路由器」は、3つの選択肢から1つを選ぶ。"]
MIXED = "把这段话翻译成英文：The router picks the cheapest provider."


def cjk_tokenizer() -> Tokenizer:
    """A byte-level BPE trained on Chinese and Japanese text: CJK characters merged into tokens, as a real
    multilingual vocabulary has them."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator((CJK + [MIXED]) * 20, trainer)
    return tokenizer


@pytest.mark.parametrize("tokenizer", [build_tiny_tokenizer(512), cjk_tokenizer()], ids=["english-bpe", "cjk-bpe"])
@pytest.mark.parametrize("prompt", CJK)
def test_a_cjk_prompts_estimate_is_at_least_its_token_count(tokenizer, prompt):
    """The worst case (the tiny model's English vocabulary: every CJK byte a token of its own, <s> in front)
    and a CJK-trained one."""
    assert estimate_tokens(prompt) >= len(tokenizer.encode(prompt).ids)


def test_a_mixed_prompts_estimate_is_at_least_its_token_count():
    """CJK with English in it, counted by a vocabulary that knows both (the tiny model's 512 tokens spend two
    characters a token on English, which no real model's vocabulary does)."""
    assert estimate_tokens(MIXED) >= len(cjk_tokenizer().encode(MIXED).ids)


def test_a_cloud_providers_estimate_counts_a_cjk_prompt_by_its_bytes_not_four_characters_a_token():
    """What the dispatcher reserves for: a cloud provider has no tokenizer offline, so it counts conservatively."""
    provider = build_cloud_provider(SPECS["gpt-proxy"], "k")
    prompt = CJK[0]
    assert provider.count_tokens(prompt) >= len(prompt.encode()) > 3 * -(-len(prompt) // 4)
