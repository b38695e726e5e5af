"""Tokenizer: byte-level BPE trained on real text, special and chat-role tokens, lossless round trips."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeling.tokenizer import BOS, CHAT_ROLES, END_OF_TURN, EOS, PAD, Tokenizer


def test_tokenizer_trains_merges_on_real_text(tok, docs):
    assert 256 + 3 < tok.vocab_size <= 800
    sample = "\n\n".join(docs[:20])
    ids = tok.encode(sample)
    # BPE merges make common English/code much shorter than its UTF-8 bytes.
    assert len(ids) < 0.6 * len(sample.encode("utf-8"))
    assert tok.decode(ids) == sample
    assert tok.encode_batch([sample, "x"]) == [ids, tok.encode("x")]


def test_special_tokens_have_distinct_ids(tok):
    ids = {tok.eos_id, tok.bos_id, tok.pad_id}
    assert len(ids) == 3
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert [tok.hf.id_to_token(i) for i in (tok.eos_id, tok.bos_id, tok.pad_id)] == [EOS, BOS, PAD]
    # Special ids are dropped on decode (default) and kept on request.
    hello = tok.encode("hello")
    assert tok.decode([tok.bos_id, *hello, tok.eos_id]) == "hello"
    assert tok.decode([*hello, tok.eos_id], skip_special_tokens=False) == "hello" + EOS


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_round_trip_arbitrary_unicode(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=10), st.sampled_from(
    [EOS, BOS, PAD, *CHAT_ROLES.values(), END_OF_TURN, "<|", "|>"])), max_size=8))
def test_text_spelling_special_tokens_round_trips_as_plain_text(tok, parts):
    """Document text containing "<|endoftext|>" or "<|user|>" must not become the real special id
    (a forged document or turn boundary) and must not vanish on decode."""
    s = "".join(parts)
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    special = {tok.special_id(t) for t in tok.special_tokens}
    assert len(special) == 7 and not special & set(ids)


def test_encode_chat_formats_turns_and_masks_assistant_tokens(tok):
    ids = {r: tok.role_id(r) for r in CHAT_ROLES}
    assert tok.special_tokens[:7] == [EOS, BOS, PAD, *CHAT_ROLES.values(), END_OF_TURN]
    assert [tok.hf.id_to_token(ids[r]) for r in CHAT_ROLES] == list(CHAT_ROLES.values())
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2? <|end|>"},
                {"role": "assistant", "content": "4"}, {"role": "user", "content": ""},
                {"role": "assistant", "content": "Done."}]
    chat, mask = tok.encode_chat(messages)
    end = tok.end_of_turn_id
    expected, expected_mask = [], []
    for m in messages:
        body = [*tok.encode(m["content"]), end]
        expected += [ids[m["role"]], *body]
        expected_mask += [False] + [m["role"] == "assistant"] * len(body)
    assert (chat, mask) == (expected, expected_mask)
    # The user's "<|end|>" is plain text: exactly one end-of-turn id per message.
    assert chat.count(end) == len(messages)
    trained = [t for t, m in zip(chat, mask) if m]
    assert trained == [*tok.encode("4"), end, *tok.encode("Done."), end]
    assert tok.decode(chat, skip_special_tokens=False) == "".join(
        f"{CHAT_ROLES[m['role']]}{m['content']}{END_OF_TURN}" for m in messages)
    prompt, prompt_mask = tok.encode_chat(messages[:2], add_generation_prompt=True)
    assert prompt[-1] == ids["assistant"] and not any(prompt_mask)
    with pytest.raises(ValueError, match="^role"):
        tok.encode_chat([{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match=r"^messages\[0\]"):
        tok.encode_chat([{"role": "user", "content": None}])


def test_tokenizer_without_chat_tokens_fails_only_when_chat_is_used(docs):
    old = Tokenizer.train(docs[:50], vocab_size=400, chat=False, extra_special_tokens=["<|tool|>"])
    assert old.special_tokens == [EOS, BOS, PAD, "<|tool|>"] and not old.has_chat
    assert old.decode(old.encode("plain <|user|> text")) == "plain <|user|> text"
    with pytest.raises(ValueError, match="trained without chat tokens"):
        old.encode_chat([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="trained without chat tokens"):
        old.end_of_turn_id
    from pipelines.tokenize import TokenizeConfig          # the tokenize stage's config lists extras

    with pytest.raises(ValueError, match="^special_tokens"):
        TokenizeConfig(special_tokens=[""])


def test_tokenizer_save_load_round_trip(tok, docs, tmp_path):
    path = tok.save(tmp_path / "tok")
    assert path.name == "tokenizer.json" and path.is_file()
    for loaded in (Tokenizer.load(tmp_path / "tok"), Tokenizer.load(path)):
        assert loaded.vocab_size == tok.vocab_size
        assert (loaded.eos_id, loaded.bos_id, loaded.pad_id) == (tok.eos_id, tok.bos_id, tok.pad_id)
        assert loaded.special_tokens == tok.special_tokens and loaded.end_of_turn_id == tok.end_of_turn_id
        for text in docs[:50] + ["", "  leading spaces", "émoji 🙂 漢字\r\n\t", f"a{EOS}b"]:
            assert loaded.encode(text) == tok.encode(text)
            assert loaded.decode(tok.encode(text)) == text


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
