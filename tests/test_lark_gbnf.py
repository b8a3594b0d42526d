"""Lark grammars -> GBNF (jan.templates.lark_gbnf): every grammar written is one llama.cpp's own grammar parser loads,
and llama.cpp's grammar engine accepts what the Lark grammar accepts and refuses what it refuses (checked against
lark itself), in both encodings (the text itself, and the text inside a JSON string); what GBNF cannot express is a
LarkGrammarError naming the construct and the terminal."""

from __future__ import annotations

import json

import pytest
from jan.templates import check_gbnf
from jan.templates.lark_gbnf import LarkGrammarError, lark_to_gbnf

lark = pytest.importorskip("lark")

# the shape of Codex CLI's apply_patch grammar (the patch envelope, file operations, hunks), in our own words
PATCH = r"""
start: opening operation+ closing
opening: "*** Begin Patch" LF
closing: "*** End Patch" LF?

?operation: add_file | delete_file | update_file
add_file: "*** Add File: " path LF added+
delete_file: "*** Delete File: " path LF
update_file: "*** Update File: " path LF rename? hunk?
rename: "*** Move to: " path LF
path: /(.+)/
added: "+" /(.+)/ LF -> line

hunk: (header | line_change)+ end_of_file?
header: ("@@" | "@@ " /(.+)/) LF
line_change: ("+" | "-" | " ") /(.+)/ LF
end_of_file: "*** End of File" LF

%import common.LF
"""

JSONISH = r"""
?start: value
?value: object | array | string | SIGNED_NUMBER -> number | "true" -> true | "false" -> false | "null" -> null
array: "[" [value ("," value)*] "]"
object: "{" [pair ("," pair)*] "}"
pair: string ":" value
string: ESCAPED_STRING
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""

ARITHMETIC = r"""
?start: sum
?sum: product | sum "+" product -> add | sum "-" product -> sub
?product: atom | product "*" atom -> mul | product "/" atom -> div
?atom: NUMBER -> number | "-" atom -> neg | NAME -> var | "(" sum ")"
%import common.CNAME -> NAME
%import common.NUMBER
%import common.WS_INLINE
%ignore WS_INLINE
"""

COMMANDS = r"""
start: (command _NL)* command _NL?
command: verb WORD+
verb: "go"i | "take"i | "look"i
_NL: /\r?\n/
%import common.WORD
%ignore " "
"""

REGEXES = r"""
start: DATE " " TIME (" " ZONE)? " " ID " " HEX ~ 1..3 " " QUOTED " " COMMENT
DATE: /\d{4}-\d{2}-\d{2}/
TIME: /(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?/
ZONE: /[A-Z]{3,4}|[+-]\d\d:?\d\d/
ID: /[a-z_][\w.-]*/i
HEX: /0x[0-9a-f]+/i
QUOTED: /'[^'\n]*'/
COMMENT: "/*" /(.|\n)*?/ "*/"
"""

TEMPLATES = r"""
start: _list{ITEM, ","} ";" _list{NUMBER, "|"}
_list{item, sep}: item (sep item)*
ITEM: /[a-z]+/
%import common.NUMBER
"""

CASES = {
    "patch": (PATCH, [
        "*** Begin Patch\n*** Add File: a/b.txt\n+hello\n+ \n*** End Patch\n",
        ("*** Begin Patch\n*** Delete File: old.py\n*** Update File: src/app.py\n*** Move to: src/main.py\n"
         "@@ def greet():\n-print(\"Hi\")\n+print(\"Hello, \\\"world\\\"\")\n  x\n*** End of File\n*** End Patch"),
        "*** Begin Patch\n*** Update File: x\n@@\n+é 日本 \t tab\n*** End Patch\n",
    ], [
        "*** Begin Patch\n*** End Patch\n",                       # no operation
        "*** Begin Patch\n*** Add File: a\n*** End Patch\n",       # an added file with no line
        "*** Begin Patch\n*** Update File: x\n@@\n?odd\n*** End Patch\n",
        "*** Begin Patch\n*** Add File: a\n+x\n*** End Patch\n\n",  # a second newline at the end
    ]),
    "json": (JSONISH, [
        '{"a": [1, -2.5e3, true, null], "b": {"c": "x\\"y"}}', ' [ ] ', '"\\\\"', "\n{ \"k\" :\tfalse }\n",
    ], ['{"a" 1}', '[1,]', '"unterminated', '"a"b"', "tru"]),
    "arithmetic": (ARITHMETIC, ["1+2*3", "x - (y/ -4.5) * z1", "((a))", "- - 3"], ["1+", "*2", "(1", "1 2"]),
    "commands": (COMMANDS, ["GO north\nTake the lamp", "look  around\n", "go x\r\nlook y\n"],
                 ["go", "run north", "go north\n\n", "go north\nlook"]),
    "regexes": (REGEXES, [
        "2024-01-31 23:59 CEST Item_1.x-2 0xFF 'a b' /* a * / b\n */",
        "1999-12-31 00:00:59 +05:30 a 0X10xa0XB 'x' /**/",
    ], [
        "2024-1-31 23:59 a 0x1 '' /**/",            # one-digit month
        "2024-01-31 24:00 a 0x1 '' /**/",           # hour 24
        "2024-01-31 23:59 a 0x1 '' /* a */ b */",   # the comment ends at its first */
        "2024-01-31 23:59 a 0x1 0x2 0x3 0x4 '' /**/",
    ]),
    "templates": (TEMPLATES, ["a,bc;1|2.5", "x;3"], ["a,;1", "a;1|", "A;1"]),
}


def _lark_accepts(definition: str, text: str) -> bool:
    parser = lark.Lark(definition, parser="earley", lexer="dynamic_complete")
    try:
        parser.parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_gbnf_accepts_what_lark_accepts(llama, name):
    definition, good, bad = CASES[name]
    grammar = lark_to_gbnf(definition, "raw")
    check_gbnf(grammar)
    assert llama.parses(grammar), grammar
    for text in good:
        assert _lark_accepts(definition, text), f"(the test's own example) lark refuses {text!r}"
        assert llama.accepts(grammar, text), f"should accept {text!r}\n{grammar}"
    for text in bad:
        assert not _lark_accepts(definition, text), f"(the test's own example) lark accepts {text!r}"
        assert not llama.accepts(grammar, text), f"should refuse {text!r}\n{grammar}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_json_encoding_is_the_text_inside_a_json_string(llama, name):
    definition, good, bad = CASES[name]
    grammar = lark_to_gbnf(definition, "json")
    check_gbnf(grammar)
    assert llama.parses(grammar), grammar
    for text in good:
        written = json.dumps(text, ensure_ascii=False)[1:-1]
        assert llama.accepts(grammar, written), f"should accept {written!r}\n{grammar}"
        if "\n" in text:
            assert not llama.accepts(grammar, text)  # a raw newline is no JSON string's
    for text in bad:
        assert not llama.accepts(grammar, json.dumps(text, ensure_ascii=False)[1:-1]), text


def test_every_common_terminal_converts(llama):
    # (what %import common.X brings: each one's GBNF loads, and accepts a sample Lark accepts)
    samples = {"DIGIT": "7", "HEXDIGIT": "f", "INT": "42", "SIGNED_INT": "-42", "DECIMAL": "4.", "FLOAT": "1e5",
               "SIGNED_FLOAT": "+.5", "NUMBER": "3.25", "SIGNED_NUMBER": "-7", "ESCAPED_STRING": '"a\\"b"',
               "LCASE_LETTER": "q", "UCASE_LETTER": "Q", "LETTER": "Z", "WORD": "Hello", "CNAME": "_x1",
               "WS_INLINE": " \t", "WS": " \n", "CR": "\r", "LF": "\n", "NEWLINE": "\r\n\n", "SH_COMMENT": "# hi",
               "CPP_COMMENT": "// hi", "C_COMMENT": "/* a\n * b */", "SQL_COMMENT": "-- hi"}
    for name, sample in samples.items():
        definition = f"start: {name}\n%import common.{name}\n"
        grammar = lark_to_gbnf(definition, "raw")
        assert llama.parses(grammar), (name, grammar)
        assert _lark_accepts(definition, sample) and llama.accepts(grammar, sample), (name, sample, grammar)


def test_zero_width_terminals_convert(llama):
    # (Lark's dynamic Earley parser refuses them; the grammar itself is fine, and Codex-style grammars have them)
    grammar = lark_to_gbnf('start: ("+" /(.*)/ "\\n")+', "raw")
    assert llama.accepts(grammar, "+\n+abc\n") and not llama.accepts(grammar, "+\n-\n")


# whitespace a writer puts between two tokens: none, spaces, tabs, a line break and indentation, a blank line
NORMAL_GAPS = ["", " ", "  ", "\t", "\n", "\n  ", "\n\t\t", "\r\n    ", "\n\n", "\n\n    ", " \n  ", " " * 20,
               "\n" + " " * 20]


def _json_document(rng, depth: int = 0) -> list[str]:
    """The tokens of a random JSON-ish document of the JSONISH grammar."""
    kind = rng.choice(["object", "array", "scalar"] if depth < 3 else ["scalar"])
    if kind == "scalar":
        return [rng.choice(['"x"', '"a b"', "1", "-2.5e3", "true", "false", "null"])]
    if kind == "array":
        items = [_json_document(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        out = ["["]
        for i, item in enumerate(items):
            out += ([","] if i else []) + item
        return out + ["]"]
    out = ["{"]
    for i in range(rng.randint(0, 3)):
        out += ([","] if i else []) + [f'"k{i}"', ":"] + _json_document(rng, depth + 1)
    return out + ["}"]


def test_documents_with_normal_whitespace_are_accepted(llama):
    """Bounding the ignored whitespace keeps every document written with normal whitespace (up to 20 spaces or tabs,
    up to two line breaks each with up to 20 of indentation: llama.cpp's bound in its JSON-schema grammars) accepted,
    before the first token, between any two and after the last; in both encodings."""
    import random

    rng = random.Random(5)
    raw, encoded = lark_to_gbnf(JSONISH, "raw"), lark_to_gbnf(JSONISH, "json")
    for _ in range(25):
        tokens = _json_document(rng)
        text = rng.choice(NORMAL_GAPS) + "".join(t + rng.choice(NORMAL_GAPS) for t in tokens)
        assert _lark_accepts(JSONISH, text), text
        assert llama.accepts(raw, text), text
        assert llama.accepts(encoded, json.dumps(text, ensure_ascii=False)[1:-1]), text


@pytest.mark.parametrize("gap", [" " * 21, "\t" * 21, "\n\n\n", "\n" + " " * 21, " " * 20 + "\n" + " " * 21,
                                 "\n \n \n", " " * 200, "\n" * 100])
def test_ignored_whitespace_is_bounded(llama, gap):
    """``%ignore WS`` lets Lark skip any run of whitespace; the GBNF allows llama.cpp's bounded run (20 spaces or tabs,
    two line breaks, 20 of indentation after each), so a weak model cannot fill its output with blanks: a longer run
    anywhere (before the first token, between two, after the last) is refused, in both encodings."""
    raw, encoded = lark_to_gbnf(JSONISH, "raw"), lark_to_gbnf(JSONISH, "json")
    for text in (f"[1,{gap}2]", f"{gap}[1]", f"[1]{gap}", f"{{{gap}}}"):
        assert _lark_accepts(JSONISH, text)  # (Lark itself skips any run)
        assert not llama.accepts(raw, text), repr(text)
        assert not llama.accepts(encoded, json.dumps(text)[1:-1]), repr(text)
    # the longest run allowed still is
    longest = " " * 20 + ("\n" + " " * 20) * 2
    assert llama.accepts(raw, f"[1,{longest}2]") and llama.accepts(raw, f"{longest}[1]{longest}")


@pytest.mark.parametrize("ignore, good, bad", [
    ('" "', ["a b", "a          b"], ["a\tb", "a\nb", "a" + " " * 21 + "b"]),          # spaces only
    ("WS_INLINE", ["a \t b", "a\t\tb"], ["a\nb", "a\r\nb"]),                       # no line breaks
    ("NEWLINE", ["a\nb", "a\r\n\nb", "ab"], ["a b", "a\n\n\nb"]),                  # line breaks only
    ("CR", ["a\rb"], ["a\nb", "a b"]),                                                # (a lone CR is no line break)
])
def test_the_bounded_run_holds_only_what_the_grammar_ignores(llama, ignore, good, bad):
    definition = f'start: "a" "b"\n%import common.{ignore}\n%ignore {ignore}' if ignore.isupper() else \
        f'start: "a" "b"\n%ignore {ignore}'
    grammar = lark_to_gbnf(definition, "raw")
    for text in good:
        if ignore == "CR":
            continue  # (a CR alone is not among the bounded run's characters: less than Lark, never more)
        assert _lark_accepts(definition, text) and llama.accepts(grammar, text), (text, grammar)
    for text in bad:
        assert not llama.accepts(grammar, text), (text, grammar)


def test_ignored_comments_stay_whole_with_bounded_whitespace_around_them(llama):
    definition = ('start: "a" "b"\nCOMMENT: /#[^\\n]*/\n%import common.WS\n%ignore WS\n%ignore COMMENT')
    grammar = lark_to_gbnf(definition, "raw")
    for text in ["a # a comment much longer than twenty characters\n  b", "a#x\n#y\nb", "a b # end"]:
        assert _lark_accepts(definition, text) and llama.accepts(grammar, text), text
    assert not llama.accepts(grammar, "a #x\n" + " " * 21 + "b")


@pytest.mark.parametrize("definition, words", [
    ('start: /a(?=b)/ "b"', ["lookahead", "terminal"]),
    ('start: /(?<!x)a/', ["lookbehind", "terminal"]),
    (r'start: /(a)\1/', ["backreference"]),
    ('start: /^a$/', ["anchor"]),
    ('start: /a+?/', ["lazy"]),
    ('start: "a" b', ["does not load"]),           # an undefined rule
    ('start: ("a"', ["does not load"]),            # no Lark syntax
    ('begin: "a"', ["start"]),                     # no start rule
    ("start: A\n%declare A", ["%declare"]),
    ("start: start \"a\"", ["only ever starts with itself"]),
    ('start: a "x"\na: b start | "y"\nb: "z"?', ["left-recursive behind 'b'"]),  # (hidden behind b, which can be empty)
    ("start: A\nA: /a{5000}/", ["repetition"]),
    ('start: X\n%import nowhere.X', ["%import nowhere.X", "common"]),  # (no file of the server's is read)
    # no finite text: a model held to it wrote until its token limit; said of the Lark rule, not its GBNF name
    ('start: "a" start', ["rule 'start' can never end"]),
    ('start: "x" | item\nitem: "(" item ")"', ["rule 'item' can never end"]),
    ('start: "x" item*\nitem: "(" item ")"', ["rule 'item' can never end"]),
])
def test_what_gbnf_cannot_say_is_refused(definition, words):
    with pytest.raises(LarkGrammarError) as err:
        lark_to_gbnf(definition, "json")
    assert all(w in str(err.value) for w in words), str(err.value)
    assert err.value.code in ("invalid_grammar", "grammar_too_complex")


def test_a_definition_converts_once():
    first = lark_to_gbnf(PATCH, "json")
    assert lark_to_gbnf(PATCH, "json") is first  # (cached per definition and encoding)
    assert lark_to_gbnf(PATCH, "raw") != first


@pytest.mark.parametrize("fmt, call", [
    # a JSON-arguments format: the text inside the argument's JSON string
    ("hermes", lambda text: '<tool_call>\n{"name": "apply_patch", "arguments": {"input": '
                            + json.dumps(text, ensure_ascii=False) + '}}\n</tool_call>'),
    # an XML format: the text itself between the tags
    ("qwen3-coder", lambda text: "<tool_call>\n<function=apply_patch>\n<parameter=input>\n" + text
                                 + "\n</parameter>\n</function>\n</tool_call>"),
])
def test_the_call_grammar_holds_the_argument_to_its_lark_grammar(llama, fmt, call):
    from jan.templates.formats.grammars import call_grammar
    from jan.templates.grammar import with_text_grammars

    tool = {"type": "function", "function": {"name": "apply_patch", "description": "Patch files", "parameters": {
        "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
        "additionalProperties": False}}}
    tools = with_text_grammars([tool], {"apply_patch": {"input": PATCH}})
    assert "x-jan-lark" not in json.dumps(tool)  # (the tool the template prints is left as it was)
    grammar = call_grammar(fmt, tools, "required", parallel=False)
    check_gbnf(grammar)
    good, bad = CASES["patch"][1], CASES["patch"][2]
    assert all(llama.accepts(grammar, call(text)) for text in good), grammar
    assert not any(llama.accepts(grammar, call(text)) for text in bad), grammar
    free = call_grammar(fmt, [tool], "required", parallel=False)  # (without the grammar any text goes)
    assert llama.accepts(free, call("no patch at all"))
    assert not llama.accepts(grammar, call("no patch at all"))


@pytest.mark.parametrize("fmt, call", [
    ("hermes", lambda text: '<tool_call>\n{"name": "emit", "arguments": {"input": '
                            + json.dumps(text, ensure_ascii=False) + '}}\n</tool_call>'),
    ("qwen3-coder", lambda text: "<tool_call>\n<function=emit>\n<parameter=input>\n" + text
                                 + "\n</parameter>\n</function>\n</tool_call>"),
])
def test_a_call_grammar_bounds_the_ignored_whitespace_of_its_lark_argument(llama, fmt, call):
    """The bound holds where the Lark grammar holds a tool call's argument (a custom tool's input), in both the
    JSON-string and the XML spelling: normal whitespace passes, a run past the bound does not."""
    from jan.templates.formats.grammars import call_grammar
    from jan.templates.grammar import with_text_grammars

    tool = {"type": "function", "function": {"name": "emit", "parameters": {
        "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
        "additionalProperties": False}}}
    grammar = call_grammar(fmt, with_text_grammars([tool], {"emit": {"input": JSONISH}}), "required", parallel=False)
    check_gbnf(grammar)
    assert llama.accepts(grammar, call('{"a": [1,\n    2],\n\n  "b" :\ttrue}'))
    assert not llama.accepts(grammar, call('{"a":' + " " * 21 + "1}"))
    assert not llama.accepts(grammar, call('{"a": 1' + "\n" * 3 + "}"))
