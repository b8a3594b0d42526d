"""llama.cpp's own grammar engine as a test oracle: whether it parses a GBNF grammar, and whether the grammar
accepts a text.

``llama_cpp.LlamaGrammar.from_string`` does not parse anything in llama-cpp-python 0.3.x (it only stores the
text), so this goes one level down: ``llama_sampler_init_grammar`` (NULL for invalid GBNF) on the vocabulary of
a vocab-only GGUF, and the sampler itself decides whether a text is accepted — byte token by byte token, ending
with EOS, which the grammar only allows once the text is complete.
"""

from __future__ import annotations

import ctypes


class LlamaGrammarChecker:
    """Validates grammars and runs texts through llama.cpp's grammar sampler."""

    def __init__(self, vocab_gguf):
        import llama_cpp as L

        self.L = L
        L.llama_backend_init()
        params = L.llama_model_default_params()
        params.vocab_only = True
        self.model = L.llama_model_load_from_file(str(vocab_gguf).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {vocab_gguf}")
        self.vocab = L.llama_model_get_vocab(self.model)
        # single-byte tokens (<0x00>..<0xFF>) spell any text, so a text is
        # checked byte by byte whatever the tokenizer would do with it
        self.byte_token: dict[int, int] = {}
        for t in range(L.llama_vocab_n_tokens(self.vocab)):
            text = L.llama_vocab_get_text(self.vocab, t) or b""
            if len(text) == 6 and text.startswith(b"<0x") and text.endswith(b">"):
                self.byte_token[int(text[3:5], 16)] = t
        assert len(self.byte_token) == 256
        self.eos = L.llama_vocab_eos(self.vocab)

    def close(self) -> None:
        self.L.llama_model_free(self.model)

    def _sampler(self, grammar: str):
        return self.L.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")

    def parses(self, grammar: str) -> bool:
        sampler = self._sampler(grammar)
        if not sampler:
            return False
        self.L.llama_sampler_free(sampler)
        return True

    def _allowed(self, sampler, token: int) -> bool:
        data = (self.L.llama_token_data * 1)(self.L.llama_token_data(token, 0.0, 0.0))
        arr = self.L.llama_token_data_array(data, 1, -1, False)
        self.L.llama_sampler_apply(sampler, ctypes.byref(arr))
        return data[0].logit != float("-inf")

    def accepts(self, grammar: str, text: str) -> bool:
        sampler = self._sampler(grammar)
        assert sampler, "grammar does not parse"
        try:
            for byte in text.encode("utf-8"):
                token = self.byte_token[byte]
                # never accept a rejected token: llama.cpp aborts on that
                if not self._allowed(sampler, token):
                    return False
                self.L.llama_sampler_accept(sampler, token)
            return self._allowed(sampler, self.eos)
        finally:
            self.L.llama_sampler_free(sampler)
